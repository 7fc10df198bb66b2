"""What every top-level script shares: one-line errors and exit codes instead of tracebacks."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from .data import DataError, load_dataset
from .artifact import ModelError, check_training_data, load_model

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def run_main(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Call a script's main; turn a known failure into 'error: ...' on stderr and exit code 2."""
    try:
        return int(main(argv) or EXIT_OK)
    except (DataError, ModelError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


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
            raise argparse.ArgumentTypeError(f"must be above {low:g}" + (f" and at most {high:g}" if high is not None else "")
                                             + f", got {value}")
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


def add_analysis_args(p: argparse.ArgumentParser, outputs: str) -> None:
    """The flags every analysis of the trained model shares: the model, its training data, the report folder."""
    p.add_argument("--model", default="model.joblib", help="model trained by train.py (sha256-verified against its card)")
    p.add_argument("--data", default="data/data.csv", help="the CSV the model was trained on")
    p.add_argument("--out-dir", default="reports", help=f"where {outputs} go")


def load_analysis_inputs(args: argparse.Namespace):
    """The verified model and its training data, refused when the data is not what the card says it was trained on."""
    model = load_model(args.model)
    data = load_dataset(args.data)
    check_training_data(model.card, data)
    return model, data
