"""Summarise mutmut's results by module -> reports/mutation.json, and print it.

mutmut keeps one result file per mutated module (mutants/<path>.meta: mutant name -> exit code
of its test run); the exit code's meaning is mutmut's own map (mutmut.stats), so this script
reads the results the tool wrote instead of parsing its terminal output.
Score = killed / mutants checked: a timeout, a survivor and a mutant no selected test reaches
("no tests", a hole in the selection) all count as not killed.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

STATUSES = ("killed", "survived", "timeout", "no tests", "suspicious", "not checked")


def summarise(mutants_dir: Path) -> dict:
    """Counts by status per module, the score, and the names of the mutants not killed."""
    modules = {}
    for meta in sorted(mutants_dir.rglob("*.py.meta")):
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        module = str(meta.relative_to(mutants_dir))[: -len(".py.meta")].replace("/", ".")
        status = {name: status_by_exit_code[code] for name, code in codes.items()}
        counts = Counter(status.values())
        row = {s: counts.get(s, 0) for s in STATUSES}
        row.update({s: n for s, n in counts.items() if s not in STATUSES})
        row["total"] = len(codes)
        row["score"] = _score(row)
        row["not_killed"] = sorted(n for n, s in status.items() if s != "killed")
        modules[module] = row
    totals = Counter()
    for row in modules.values():
        totals.update({k: v for k, v in row.items() if isinstance(v, int)})
    overall = dict(totals)
    overall["score"] = _score(overall)
    return {"modules": modules, "overall": overall}


def _score(row: dict) -> float | None:
    checked = row["total"] - row.get("not checked", 0)
    return round(row.get("killed", 0) / checked, 4) if checked else None


def table(summary: dict) -> str:
    cols = ("killed", "survived", "timeout", "no tests", "checked", "total")
    lines = [f"{'module':<24}" + "".join(f"{c:>10}" for c in cols) + f"{'score':>8}"]
    for name, row in [*summary["modules"].items(), ("overall", summary["overall"])]:
        score = "-" if row["score"] is None else f"{100 * row['score']:.1f}%"
        row = {**row, "checked": row["total"] - row.get("not checked", 0)}
        lines.append(f"{name:<24}" + "".join(f"{row.get(c, 0):>10}" for c in cols) + f"{score:>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=Path, default=Path("mutants"), help="mutmut's working copy")
    parser.add_argument("--out", type=Path, default=Path("reports/mutation.json"))
    parser.add_argument("--wall-seconds", type=int, help="the run's wall time, recorded with the counts")
    args = parser.parse_args(argv)
    if not any(args.mutants.rglob("*.py.meta")):
        parser.error(f"no mutmut results under {args.mutants}/: run `make mutation` first")
    summary = summarise(args.mutants)
    if args.wall_seconds is not None:
        summary["wall_seconds"] = args.wall_seconds
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(summary))
    if args.wall_seconds is not None:
        print(f"wall time: {args.wall_seconds} s")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
