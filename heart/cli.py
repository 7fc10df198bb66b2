"""What every top-level script shares: one-line errors and exit codes instead of tracebacks.

The server's script imports it too, so it imports neither pandas nor SciPy (heart.data,
heart.label_check) until a script reads data.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from .artifact import ModelError, load_model

if TYPE_CHECKING:
    from .data import Dataset
    from .progress import Stages

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def run_main(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Call a script's main; turn a known failure into 'error: ...' on stderr and exit code 2."""
    try:
        return int(main(argv) or EXIT_OK)
    except (*_data_errors(), ModelError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
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
            rule = f"at least {low:g}"
        elif low is None:
            rule = f"at most {high:g}"
        else:
            rule = f"between {low:g} and {high:g}"
        raise argparse.ArgumentTypeError(f"must be {rule}, got {value}")


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
    p.add_argument("--out-dir", default="reports", help=f"where {outputs} go")
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
