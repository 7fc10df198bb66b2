"""Progress of long work, one way for every script: a tqdm bar on a terminal, one line per stage
with its elapsed time off a terminal (CI logs, pipes: a bar would be a mess of carriage returns
there), nothing at all with --quiet. Everything goes to stderr, so stdout stays the result.

Library code reports through the `Stages` it is given and defaults to `SILENT`, so tests and
callers that import the package see nothing unless they ask.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm

BAR, LINES, OFF = "bar", "lines", "off"


class Stage:
    """One stage of work with a known number of steps; use as a context manager and call update()."""

    def __init__(self, desc: str, total: int, unit: str, mode: str, stream: TextIO, clock: Callable[[], float]):
        self.desc, self.total, self.unit, self.mode = desc, total, unit, mode
        self.stream, self.clock = stream, clock
        self.done = 0
        self.start = clock()
        self.bar = (
            tqdm(total=total, desc=desc, unit=f" {unit}", file=stream, mininterval=0.2, disable=False)
            if mode == BAR
            else None
        )

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def close(self, failed: bool = False) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.mode == LINES and not failed:  # a failure speaks for itself (error line, exit code)
            elapsed = self.clock() - self.start
            print(f"{self.desc}: {self.done}/{self.total} {self.unit} in {elapsed:.1f} s", file=self.stream, flush=True)

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)


class Stages:
    """Where a run's stages report: BAR when `stream` is a terminal, LINES when it is not, OFF when quiet."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.mode = OFF if quiet else BAR if _is_terminal(self.stream) else LINES

    def stage(self, desc: str, total: int, unit: str = "fits") -> Stage:
        return Stage(desc, total, unit, self.mode, self.stream, self.clock)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


SILENT = Stages(quiet=True)
