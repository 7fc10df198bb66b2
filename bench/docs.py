"""Generated blocks in the docs: the benchmarks write their tables between HTML comment markers
(<!-- NAME:begin --> ... <!-- NAME:end -->), so docs/performance.md shows the latest run and the
prose around it stays as written."""

from __future__ import annotations

from pathlib import Path

from heart.artifact import atomic_write


def replace_block(path: str | Path, name: str, text: str) -> None:
    """Put `text` between the file's `name` markers; a file without them is an error, not a silent no-op."""
    path = Path(path)
    doc = path.read_text()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if doc.count(begin) != 1 or doc.count(end) != 1 or doc.index(begin) > doc.index(end):
        raise ValueError(f"{path}: expected one {begin} ... {end} block")
    head, rest = doc.split(begin)
    _, tail = rest.split(end)
    atomic_write(path, f"{head}{begin}\n{text.strip()}\n{end}{tail}".encode())
