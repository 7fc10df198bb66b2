"""What every top-level script shares: one-line errors and exit codes instead of tracebacks.

The server's script imports it too, so it imports neither pandas nor SciPy (heart.data,
heart.label_check) until a script reads data.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .artifact import ModelError, load_model

if TYPE_CHECKING:
    from .data import Dataset
    from .progress import Stages

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
SEED_MAX = 2**32 - 1  # numpy's legacy generators and scikit-learn's random_state take 0 .. 2**32 - 1
MAX_JOBS = 256


def run_main(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Call a script's main; turn a known failure into 'error: ...' on stderr and exit code 2."""
    try:
        return int(main(argv) or EXIT_OK)
    except (*_data_errors(), ModelError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _data_errors() -> tuple[type[Exception], ...]:
    """heart.data's DataError, if anything imported heart.data (nothing else can raise it)."""
    data = sys.modules.get(f"{__package__}.data")
    return (data.DataError,) if data is not None else ()


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows each option's default and keeps the description's line breaks."""


def parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number within [low, high], so a bad flag is a usage error, not a traceback."""

    def integer(value: str) -> int:
        n = int(value)
        _check_range(n, value, low, high)
        return n

    return integer


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number within [low, high] (or (low, high] with low_open)."""

    def number(value: str) -> float:
        v = float(value)
        if v != v or v in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {value}")
        if low_open and low is not None and v <= low:
            raise argparse.ArgumentTypeError(
                f"must be above {low:g}" + (f" and at most {high:g}" if high is not None else "") + f", got {value}"
            )
        _check_range(v, value, low, high)
        return v

    return number


def _check_range(v: float, value: str, low: float | None, high: float | None) -> None:
    if (low is not None and v < low) or (high is not None and v > high):
        if high is None:
            rule = f"at least {_bound(low)}"
        elif low is None:
            rule = f"at most {_bound(high)}"
        else:
            rule = f"between {_bound(low)} and {_bound(high)}"
        raise argparse.ArgumentTypeError(f"must be {rule}, got {value}")


def _bound(x: float | None) -> str:
    """Whole bounds in full (a seed's 4294967295, not 4.29497e+09), others as %g."""
    return str(x) if isinstance(x, int) else f"{x:g}"


seed = integer(0, SEED_MAX)  # --seed of every script: a seed numpy and scikit-learn accept


def jobs(value: str) -> int:
    """An argparse type for --jobs: 1 .. MAX_JOBS processes, or joblib's -1 for one per core."""
    n = int(value)
    if n != -1 and not 1 <= n <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"must be -1 (one per core) or between 1 and {MAX_JOBS}, got {value}")
    return n


def add_jobs_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--jobs", type=jobs, default=2, help=f"{what} at once: 1 to {MAX_JOBS}, or -1 for one per core")


def add_label_args(p: argparse.ArgumentParser) -> None:
    """--flip-target / --no-label-check: every script that learns from or scores against labels."""
    p.add_argument(
        "--flip-target",
        action="store_true",
        help="flip the labels (0 <-> 1) before anything reads them: for copies of this data that mark "
        "1 as 'no disease' (the label-direction check says so); recorded in the card / report",
    )
    p.add_argument(
        "--no-label-check",
        action="store_true",
        help="skip the check that the labels agree with the known risk factors (synthetic-data "
        "research); recorded in the card / report",
    )


def checked_labels(data: Dataset, args: argparse.Namespace) -> tuple[Dataset, dict]:
    """Apply --flip-target and the label-direction check; InvertedTargetError (exit 2) on contradiction."""
    from . import label_check

    data, record = label_check.apply(data, flip=args.flip_target, check=not args.no_label_check)
    note = label_check.warning(record)
    if note:
        print(note, file=sys.stderr)
    return data, record


def add_analysis_args(p: argparse.ArgumentParser, outputs: str) -> None:
    """The flags every analysis of the trained model shares: the model, its training data, the report folder."""
    p.add_argument("--model", default="model.zip", help="model trained by train.py (checked against its own checksum)")
    p.add_argument("--data", default="data/data.csv", help="the CSV the model was trained on")
    p.add_argument("--out-dir", type=output_dir, default="reports", help=f"where {outputs} go")
    add_label_args(p)


def load_analysis_inputs(args: argparse.Namespace):
    """The verified model, its training data (labels checked, flipped if asked) and the label record.

    Refused when the data is not what the card says it was trained on, or when --flip-target
    disagrees with how the model was trained on this very file.
    """
    from .data import load_dataset

    model = load_model(args.model)
    data, labels = checked_labels(load_dataset(args.data), args)
    check_training_data(model.card, data)
    trained_flipped = bool(model.card.get("labels", {}).get("flipped", False))
    if trained_flipped != labels["flipped"]:
        raise ModelError(
            f"{args.model}: the model was trained {'with' if trained_flipped else 'without'} "
            f"--flip-target on this file; pass the same here "
            f"({'add' if trained_flipped else 'drop'} --flip-target)"
        )
    return model, data, labels


def check_training_data(card: dict, data: Dataset) -> None:
    """The held-out split is only held out for the file the model was trained on."""
    expected = card.get("data", {}).get("sha256")
    if expected and expected != data.sha256:
        raise ModelError(
            f"{data.source} is not the file this model was trained on (sha256 "
            f"{data.sha256[:12]}... vs {expected[:12]}... in the model card): its "
            "'held-out' rows would include training rows; pass the training data "
            "with --data, or retrain on this file"
        )


def add_quiet_arg(p: argparse.ArgumentParser) -> None:
    """--quiet for the scripts that report progress (heart.progress) on stderr."""
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress on stderr: neither the bar (on a terminal) nor the line per stage (off one)",
    )


def stages(args: argparse.Namespace) -> Stages:
    """Where the script's long stages report: a bar on a terminal, a line each off one, nothing with --quiet."""
    from .progress import Stages  # tqdm: the scripts', not the server's (which imports this module too)

    return Stages(quiet=args.quiet)


# ------------------------------------------------------------------------------ output paths


def output_file(value: str) -> str:
    """An argparse type for a file a script writes (atomically, so a file is replaced, never written
    into): refused before any work when it cannot be - an existing directory, device, FIFO or socket
    (also behind a symlink), or under a parent that is a file or not writable. Missing parent
    directories are created when the file is written."""
    why = unwritable(value)
    if why:
        raise argparse.ArgumentTypeError(why)
    return value


def output_dir(value: str) -> str:
    """An argparse type for the folder a script writes its reports into: an existing directory, or
    a path that can be created (the script creates it)."""
    why = unwritable(value, directory=True)
    if why:
        raise argparse.ArgumentTypeError(why)
    return value


def check_outputs(p: argparse.ArgumentParser, flag: str, paths) -> None:
    """The files a flag's value leads to (a card beside --out, the reports in --out-dir): a usage
    error naming the flag, before any work, if one of them cannot be written."""
    for path in paths:
        why = unwritable(path)
        if why:
            p.error(f"argument {flag}: {why}")


def check_report_files(p: argparse.ArgumentParser, args: argparse.Namespace, *names: str) -> None:
    """The reports a script writes into --out-dir: each must be writable (check_outputs)."""
    check_outputs(p, "--out-dir", [Path(args.out_dir) / name for name in names])


def unwritable(path, directory: bool = False) -> str | None:
    """Why a script could not write `path` as a regular file (or create it as a directory); None if it can."""
    path = str(path)
    if not path.strip():
        return f"an empty path: give a {'directory' if directory else 'file'} name"
    if not directory and path.endswith(("/", os.sep)):
        return f"{path} ends with a slash: give a file name, not a directory"
    name = f"{path} (a symlink to {os.readlink(path)})" if os.path.islink(path) else path
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"{name} does not exist: give a new path or an existing file"
        return _uncreatable(path)
    except NotADirectoryError:
        return _uncreatable(path)
    except OSError as e:
        return f"{path}: {e.strerror}"
    if stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode):
        folder = path if directory else os.path.dirname(os.path.realpath(path))
        return None if os.access(folder, os.W_OK | os.X_OK) else f"{folder} is not writable"
    if directory:
        return f"{name} is {_kind(mode)}, not a directory"
    return f"{name} is {_kind(mode)}, not a regular file: give a new path or a regular file to replace"


def _uncreatable(path: str) -> str | None:
    """Why `path` (which does not exist) cannot be created: its nearest existing ancestor is not a writable directory."""
    for parent in map(str, Path(os.path.abspath(path)).parents):
        try:
            mode = os.stat(parent).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            return f"cannot create {path}: {parent}: {e.strerror}"
        if not stat.S_ISDIR(mode):
            return f"cannot create {path}: {parent} is {_kind(mode)}, not a directory"
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"cannot create {path}: {parent} is not writable"
        return None
    return None


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"
