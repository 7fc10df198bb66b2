"""The passages of readme.md and docs/*.md that quote the code or the model, generated: python -m bench.docgen

Each such passage is a cog block (cogapp, pinned in requirements-dev.txt): the Python call in an
HTML comment, its output below it, up to `<!-- [[[end]]] -->`. `--check` (what `make test` runs, in
tests/test_docs.py) regenerates every block in memory and fails, with a diff, when one differs from
the file; without it the files are rewritten (`make docs`). Random ids and times in example
replies are replaced by fixed ones, so the output depends on the code and the model alone.

Two kinds of block, by what they need:
- from the model (this module): example replies of the API, the parity figure, the tables the
  code declares. The model is the one `python train.py` writes, trained again here without its
  CV (the same seeds give the same Pipeline and model_version in about 2 s; the smoke stage
  proves it by checking these blocks against the real train.py's model).
- from a full default run (bench/docfigures.py): train.py's CV table and the analyses' figures,
  read from the model card and reports/ of a directory where every default command has run
  (--run DIR). `make docs` makes that run in a fresh copy (bench.smoke's steps) and the smoke
  stage in CI checks these blocks against its own run. Without --run they are kept as they are,
  but must name the model_version the code trains now, so a new model fails the check at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from heart.schema import markdown_table

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "readme.md", *sorted((ROOT / "docs").glob("*.md"))]
PROLOGUE = "from bench import docgen, docfigures"
FAIL_MSG = "a generated passage of the docs is stale: run `make docs` (python -m bench.docgen --full)"
WIDTH = 100
# Values that differ on every request, each replaced by one fixed example of its shape.
FIXED = {
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
    "prediction_id": "9f1c2a7e5b3d4c6f8a0b1c2d3e4f5a6b",
    "timestamp": "2026-12-05T10:00:00.000+00:00",
    "latency_ms": 0.021,
}
MALE_63 = {"age": 63, "gender": "male", "cp": 3, "trestbps": 145, "chol": 233, "fbs": 1, "restecg": 0}
MALE_63 |= {"thalach": 150, "exang": 0, "oldpeak": 2.3, "slope": 0, "ca": 0, "thal": 1}
# The requests the docs show, by name: (path, JSON body).
REQUESTS = {
    "full": ("/predict", MALE_63),
    "readme": ("/predict", {"age": 54, "gender": "female", "chol": 250}),
    "few": ("/predict/", {"age": 54, "gender": "Female", "chol": 250}),
    "batch": ("/predict/batch", {"instances": [{"age": 63, "gender": 1}, {"age": 41, "gender": "female", "thal": 2}]}),
    "legacy": (
        "/predict",
        {"age": 63, "sex": "male", **{k: v for k, v in MALE_63.items() if k not in ("age", "gender")}}
        | {"ca": 4, "thal": 0},
    ),
    "alias_clash": ("/predict", {"age": 63, "sex": "male", "gender": "male"}),
    "bad_codes": ("/predict", {**MALE_63, "gender": "robot", "cp": 9}),
    "bad_row": ("/predict/batch", {"instances": [MALE_63, {**MALE_63, "age": 0}]}),
}


@dataclass
class Facts:
    """What the generators read: a model.zip, and the directory of a full default run, if any."""

    model_path: Path
    run: Path | None = None
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="heart-docgen-")))

    @cached_property
    def client(self):
        """A TestClient on the app serving the model, its prediction log in a temporary file."""
        from fastapi.testclient import TestClient

        from heart.serving.app import create_app
        from heart.serving.settings import ENV_NAMES, Settings

        logging.getLogger("heart").addHandler(logging.NullHandler())  # its warnings (model_unpinned) are not output
        values = {name: Settings.model_fields[name].default for name in ENV_NAMES}
        values |= {"model_path": self.model_path, "prediction_log": self.tmp / "predictions.jsonl", "api_auth": "open"}
        client = TestClient(create_app(Settings(**values), background_load=False, configure_logging=False))
        client.__enter__()
        return client

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.__exit__(None, None, None)

    @cached_property
    def version(self) -> str:
        return self.client.get("/ready_check").json()["model_version"]


_facts: Facts | None = None


def facts() -> Facts:
    global _facts
    if _facts is None:
        _facts = Facts(trained_model(Path(tempfile.mkdtemp(prefix="heart-docgen-model-"))))
    return _facts


def use(model_path: str | Path | None, run: str | Path | None = None) -> None:
    """Generate from this model (and this run's directory): the tests pass the session's model.
    None: back to a model trained here when one is needed."""
    global _facts
    if _facts is not None:
        _facts.close()
    _facts = None if model_path is None else Facts(Path(model_path), Path(run) if run else None)


def para(text: str, indent: str = "") -> str:
    """Prose as the docs wrap it: lines up to WIDTH."""
    import textwrap

    return textwrap.fill(text, WIDTH, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def trained_model(directory: Path) -> Path:
    """The model `python train.py` writes, without the CV (`--no-cv`): a few seconds. In a process of
    its own, as users run it: model_version hashes the Pipeline's pickle, and a pickle made in a
    process that has run other code may share (memoize) other objects, so differ in its bytes."""
    import subprocess

    path = directory / "model.zip"
    argv = [sys.executable, "train.py", "--data", str(ROOT / "data" / "data.csv"), "--no-cv", "--quiet"]
    done = subprocess.run([*argv, "--out", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"train.py --no-cv exited {done.returncode}: {(done.stdout + done.stderr)[-500:]}")
    return path


def out(text: str) -> None:
    import cog

    cog.out(text.rstrip("\n") + "\n")


# ----------------------------------------------------------------------- blocks from the model


def fixed(value):
    """The reply with its per-request ids and times replaced by FIXED's."""
    if isinstance(value, dict):
        return {k: FIXED[k] if k in FIXED else fixed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fixed(v) for v in value]
    return value


def wrapped(text: str, first: str = "", indent: str = " ") -> str:
    """Compact JSON cut after commas outside strings, lines packed up to WIDTH."""
    pieces, start, in_string, escaped = [], 0, False, False
    for i, ch in enumerate(text):
        if in_string:
            escaped, in_string = (not escaped and ch == "\\"), in_string and (escaped or ch != '"')
        elif ch == '"':
            in_string = True
        elif ch == ",":
            pieces.append(text[start : i + 1])
            start = i + 1
    pieces.append(text[start:])
    lines, line, pieces_in_line = [], first, 0
    for piece in pieces:
        if len(line) + len(piece) > WIDTH and pieces_in_line:
            lines.append(line)
            line, pieces_in_line = indent, 0
        line += piece
        pieces_in_line += 1
    return "\n".join([*lines, line])


def reply(name: str) -> dict:
    path, body = REQUESTS[name]
    return fixed(facts().client.post(path, json=body).json())


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def curl_command(name: str) -> str:
    path, body = REQUESTS[name]
    head = f"curl -s localhost:8000{path} -H 'content-type: application/json' -d '"
    return wrapped(json.dumps(body, ensure_ascii=False), head, " ") + "'"


def curls(*names: str) -> None:
    """Each request as curl sends it and the API's answer (a runnable `sh` block: bench.smoke runs it)."""
    parts = [f"{curl_command(n)}\n{wrapped(compact(reply(n)))}" for n in names]
    out("```sh runnable\n" + "\n\n".join(parts) + "\n```")


def replies(*names: str) -> None:
    """Only the answers (error examples), one per line group."""
    out("```\n" + "\n".join(wrapped(compact(reply(n))) for n in names) + "\n```")


def log_line(name: str = "full", indent: str = "  ") -> None:
    """The stdout log line of one prediction: the prediction log's record with level and logger first."""
    from heart.predlog import PredictionLines

    log = facts().tmp / "predictions.jsonl"
    before = log.read_bytes().count(b"\n") if log.exists() else 0
    reply(name)
    record = json.loads(log.read_text().splitlines()[before])
    line = PredictionLines().prefix.decode() + compact(fixed(record))[1:]
    out(f"{indent}```\n{indent}{wrapped(line, indent=indent + ' ')}\n{indent}```")


def parity() -> None:
    """The parity check's figures as /ready_check reports them for this model."""
    p = facts().client.get("/ready_check").json()["parity"]
    out(
        para(
            f"For the model `python train.py` writes (`{facts().version}`), `/ready_check` reports a largest "
            f"difference of **{p['max_abs_diff']:.2e}** over the {p['rows']:,} reference rows, against the "
            f"tolerance {p['tolerance']:g}."
        )
    )


def schema_table() -> None:
    out(markdown_table())


def smoke_budgets() -> None:
    from bench.smoke import budget_table

    out(budget_table())


# --------------------------------------------------------------------------------- running cog


def run_cog(files: list[Path], check: bool) -> int:
    """cog over the files: regenerate each block, or (check) report the stale ones with a diff."""
    from cogapp import Cog

    argv = ["cog", "-p", PROLOGUE, "-I", str(ROOT), "--verbosity", "1"]
    argv += ["--check", "--diff", "--check-fail-msg", FAIL_MSG] if check else ["-r"]
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return Cog().main([*argv, *map(str, files)])


def main(argv: list[str] | None = None) -> int:
    from bench import docgen  # the module the blocks import (this file runs as __main__)

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="fail (exit 5) if a generated passage differs")
    p.add_argument("--run", help="a directory where every default command has run (model.zip, reports/)")
    p.add_argument("--full", action="store_true", help="make that run first, in a fresh copy (bench.smoke's steps)")
    p.add_argument("files", nargs="*", help="default: readme.md and docs/*.md")
    args = p.parse_args(argv)
    run = Path(args.run).resolve() if args.run else None
    if args.full:
        from bench.smoke import full_run

        run = full_run(Path(tempfile.mkdtemp(prefix="heart-docs-run-")))
    if run is not None:
        docgen.use(run / "model.zip", run)
        if not args.check:
            from bench.docfigures import copy_figures

            print(f"wrote {len(copy_figures(run))} figures into docs/figures/")
    try:
        return docgen.run_cog([Path(f) for f in args.files] or DOCS, args.check)
    finally:
        docgen.use(None)


if __name__ == "__main__":
    sys.exit(main())
