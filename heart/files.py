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
    """Readers see the old file or the new one, never half of one. A symlink to a regular file stays
    and its target is replaced (keeping its permissions); a symlink to nothing is not followed, and a
    directory, device or FIFO (behind a symlink or not) is refused: none is replaced by a file."""
    path = Path(path)
    try:
        link = stat.S_ISLNK(os.lstat(path).st_mode)
        existing = os.stat(path).st_mode
    except FileNotFoundError:
        if path.is_symlink():  # a link to nothing: following it could write anywhere
            raise FileExistsError(f"{path} is a symlink to a missing file: not followed") from None
        existing = None
    if existing is not None and not stat.S_ISREG(existing):
        raise FileExistsError(f"{path} exists and is not a regular file: not replaced")
    if existing is not None and link:
        path = Path(os.path.realpath(path))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, stat.S_IMODE(existing) if existing is not None else _ordinary_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _ordinary_mode() -> int:
    """0o666 less the umask, as open() gives a new file (mkstemp alone gives 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
