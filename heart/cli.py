"""What every top-level script shares: one-line errors and exit codes instead of tracebacks."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from .data import DataError
from .model import ModelError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def run(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
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
