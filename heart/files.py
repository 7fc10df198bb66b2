"""Writing a file so that nothing is ever half-written: the model, its card, every report.

A reader sees the old file or the new one; an interrupted write leaves the old one and no
temporary file behind; a path that is not a regular file is never replaced by one.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def atomic_write(path: str | Path, blob: bytes) -> None:
    """Readers see the old file or the new one, never half of one. A symlink stays and its target is
    replaced; a directory, device or FIFO (behind a symlink or not) is refused, never replaced by a file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        raise FileExistsError(f"{path} exists and is not a regular file: not replaced")
    path = Path(os.path.realpath(path))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
