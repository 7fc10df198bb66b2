"""Every documented command, run as a new user runs it: python -m bench.smoke [--keep] [--out FILE]

Copies what a fresh clone holds (the tracked files, plus uncommitted edits and new files that
.gitignore does not exclude: no model, no reports, no .venv) into a temporary directory, and
runs there, with this interpreter, each command exactly as readme.md and docs/ show it:
`python train.py`, the four analyses with no flags, the HTML report, `python heart_fastapi.py`
with `python batch_predict.py` against it, and `python test.py`. Each must exit 0, print what
the docs say it prints, and finish within its budget (STEPS; the table in docs/testing.md); then
reports/index.html must have content in every section. While the server runs, each command of the
docs' `sh runnable` blocks must answer what the docs show; at the end every generated passage of
the docs must match this run (bench.docgen). Prints a table of the wall times and writes them to
--out; exits 1 at the first failure, naming the step and the tail of its output.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from heart.analyses.report import format_table, write_json
from heart.analyses.sections import SECTIONS

ROOT = Path(__file__).resolve().parent.parent
# Variables that would make a default run do something else than the docs show (a token the batch
# client does not send, another model, a port); the smoke run sets PORT and API_URL itself.
CLEARED_ENV = (
    "PYTHONPATH",
    "API_URL",
    "API_TOKENS",
    "API_TOKENS_FILE",
    "HOST",
    "PORT",
    "METRICS_PORT",
    "MODEL_PATH",
    "MODEL_SHA256",
    "MODEL_SHA256_FILE",
    "REQUIRE_MODEL_PIN",
    "PREDICTION_LOG",
    "DATABASE_URL",
    "DATABASE_URL_FILE",
    "INFERENCE_DB",
)


@dataclass(frozen=True)
class Step:
    command: str  # as the docs show it; run as argv with this interpreter for "python"
    budget_s: int  # about 3x the slowest wall time seen on the shared 2-core VM, at least 30 s (docs/testing.md)
    expect: str  # a line the docs say it prints (a substring of stdout)

    @property
    def argv(self) -> list[str]:
        words = self.command.split()
        return [sys.executable, *words[1:]] if words[0] == "python" else words


SERVER = Step("python heart_fastapi.py", 30, "")  # budget: until /ready_check answers 200
STEPS = (
    Step("python train.py", 400, "wrote model.zip and model.card.json (model_version "),
    Step("python fairness_check.py", 150, "wrote reports/fairness_gender.json and reports/fairness_gender.png"),
    Step("python explainability.py", 30, "wrote reports/explainability.json, reports/shap_bar.png"),
    Step("python drift_analysis_ks.py", 30, "wrote reports/drift.json and reports/drift.png"),
    Step("python data_poisoning.py", 600, "wrote reports/poisoning.json and reports/poisoning.png"),
    SERVER,
    Step("python batch_predict.py", 30, "wrote batch_prediction_results.json (100 records)"),
    Step("python monitor_performance.py", 30, "wrote reports/performance.json, reports/performance.png"),
    Step("python -m heart.analyses.html_report", 30, "wrote reports/index.html"),
    Step("python test.py", 120, " passed in "),
)


FEEDBACK_EXAMPLE = "curl /predict, then /feedback with its prediction_id (readme.md)"


def feedback_example(workdir: Path, port: int) -> float:
    """readme.md's two curl commands against the smoke server: /predict prints a prediction_id, and
    /feedback with that id in place of the example's answers that the label was accepted."""
    start = time.monotonic()
    predict = next(c for _, c, _ in runnable_commands([workdir / "readme.md"]) if "localhost:8000/predict " in c)
    lines = (workdir / "readme.md").read_text().splitlines()
    feedback = next(line for line in lines if line.startswith("curl -s localhost:8000/feedback "))

    def curl(line: str) -> str:
        argv = [a.replace("localhost:8000", f"127.0.0.1:{port}") for a in shlex.split(line)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise SmokeError(f"`{line[:60]}...` exited {proc.returncode}{_tail(proc.stderr)}")
        return proc.stdout

    answer = curl(predict)
    served = re.search(r'"prediction_id":"([0-9a-f]{32})"', answer)
    documented = re.search(r'"prediction_id": "([0-9a-f]{32})"', feedback)
    if not served or not documented:
        raise SmokeError(f"{FEEDBACK_EXAMPLE}: no prediction_id in{_tail(answer)}")
    stored = curl(feedback.replace(documented.group(1), served.group(1)))
    if '"accepted":1' not in stored:
        raise SmokeError(f"{FEEDBACK_EXAMPLE}: the label was not accepted{_tail(stored)}")
    return time.monotonic() - start


class SmokeError(RuntimeError):
    """A step failed: str() names the step and why."""


def fresh_copy(dest: Path, source: Path = ROOT) -> int:
    """What a fresh clone plus the working tree's edits holds, copied to `dest`; returns the file count."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=source,
        capture_output=True,
        check=True,
    ).stdout.decode()
    count = 0
    for name in filter(None, listed.split("\0")):
        src = source / name
        if src.is_file():  # a tracked file deleted in the working tree is not copied
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
            count += 1
    return count


def run_step(step: Step, cwd: Path, env: dict) -> float:
    """Run one command to completion within its budget; its wall time, or SmokeError."""
    start = time.monotonic()
    try:
        proc = subprocess.run(step.argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=step.budget_s)
    except subprocess.TimeoutExpired as e:
        raise SmokeError(
            f"`{step.command}` did not finish within its budget of {step.budget_s} s{_tail(e.stderr)}"
        ) from None
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SmokeError(f"`{step.command}` exited {proc.returncode}{_tail(proc.stderr or proc.stdout)}")
    if "Traceback" in proc.stderr:
        raise SmokeError(f"`{step.command}` printed a traceback{_tail(proc.stderr)}")
    if step.expect not in proc.stdout:
        raise SmokeError(f"`{step.command}` did not print {step.expect!r}{_tail(proc.stdout)}")
    return wall


def _tail(text: str | bytes | None, lines: int = 15, width: int = 300) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return ":\n" + "\n".join(line[:width] for line in text.splitlines()[-lines:]) if text else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(cwd: Path, env: dict, log: Path) -> tuple[subprocess.Popen, float]:
    """`python heart_fastapi.py` in the background, awaited until /ready_check says 200 (SERVER's budget)."""
    start = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(SERVER.argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{env['PORT']}/ready_check"
    while time.monotonic() - start < SERVER.budget_s:
        if proc.poll() is not None:
            raise SmokeError(f"`{SERVER.command}` exited {proc.returncode} before it was ready{_tail(log.read_text())}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return proc, time.monotonic() - start
        except OSError:  # not listening yet, or 503 while the model loads
            pass
        time.sleep(0.25)
    stop_server(proc)
    raise SmokeError(
        f"`{SERVER.command}` was not ready within its budget of {SERVER.budget_s} s{_tail(log.read_text())}"
    )


def stop_server(proc: subprocess.Popen) -> int:
    """SIGTERM, as a container runtime stops it; its exit code. After a graceful shutdown uvicorn
    re-raises the signal, so a clean stop is -SIGTERM (or 0)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class _Sections(HTMLParser):
    """Per <section id>: its data-present flag, summary text, tables and images."""

    def __init__(self):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current: dict | None = None
        self.in_summary = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.current = self.sections[a.get("id", "")] = {"present": a.get("data-present"), "summary": ""}
            self.current.update(tables=0, images=0)
        elif self.current is not None and tag in ("table", "img"):
            self.current["tables" if tag == "table" else "images"] += 1
        self.in_summary = self.current is not None and tag == "p" and "summary" in (a.get("class") or "").split()

    def handle_endtag(self, tag):
        if tag == "section":
            self.current = None
        if tag == "p":
            self.in_summary = False

    def handle_data(self, data):
        if self.in_summary:
            self.current["summary"] += data


def report_problems(html: str) -> list[str]:
    """What keeps reports/index.html from having content in every section; [] when it does."""
    page = _Sections()
    page.feed(html)
    problems = []
    for section in SECTIONS:
        got = page.sections.get(section.key)
        if got is None:
            problems.append(f"section {section.key!r} is missing")
        elif got["present"] != "true":
            problems.append(f"section {section.key!r} says not run yet ({section.make_target})")
        elif not got["summary"].strip():
            problems.append(f"section {section.key!r} has no summary")
        elif not (got["tables"] or got["images"]):
            problems.append(f"section {section.key!r} has no table or figure")
    return problems


def smoke(workdir: Path) -> list[dict]:
    """Every step in a fresh copy at `workdir`; the measured rows, or SmokeError at the first failure."""
    fresh_copy(workdir)
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    port = free_port()
    # The server writes its prediction log, and its inference table beside the model, where
    # monitor_performance.py reads it by default (the readme's /feedback has labelled one prediction).
    env["PREDICTION_LOG"] = str(workdir / "predictions.jsonl")
    env_server = {**env, "PORT": str(port)}
    env_client = {**env, "API_URL": f"http://127.0.0.1:{port}/predict"}
    check = subprocess.run(
        [sys.executable, "-c", "import heart; print(heart.__file__)"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    if not check.stdout.strip().startswith(str(workdir)):
        raise SmokeError(f"the copy imports heart from {check.stdout.strip() or check.stderr}, not from {workdir}")
    rows, server = [], None
    try:
        for step in STEPS:
            if step is SERVER:
                server, wall = start_server(workdir, env_server, workdir / "server.log")
                rows.append({"command": step.command, "budget_s": step.budget_s, "wall_s": round(wall, 1)})
                print(f"ok   {wall:6.1f} s  {step.command}", flush=True)
                step, wall = Step(FEEDBACK_EXAMPLE, 30, ""), feedback_example(workdir, port)
            else:
                wall = run_step(step, workdir, env_client if "batch_predict" in step.command else env)
            rows.append({"command": step.command, "budget_s": step.budget_s, "wall_s": round(wall, 1)})
            print(f"ok   {wall:6.1f} s  {step.command}", flush=True)
            if step.command == "python batch_predict.py":
                start = time.monotonic()
                n = run_documented_commands(workdir, env, port)
                rows.append(_row(f"the docs' {n} runnable commands", 30 * n, time.monotonic() - start))
            if step.command == "python -m heart.analyses.html_report":
                problems = report_problems((workdir / "reports" / "index.html").read_text(encoding="utf-8"))
                if problems:
                    raise SmokeError("reports/index.html: " + "; ".join(problems))
    finally:
        code = stop_server(server) if server else 0
    log = (workdir / "server.log").read_text() if server else ""
    if code not in (0, -signal.SIGTERM) or "Application shutdown complete" not in log:
        raise SmokeError(f"`{SERVER.command}` did not shut down cleanly on SIGTERM (exit {code}){_tail(log)}")
    start = time.monotonic()
    check_docs(workdir, env)
    rows.append(_row("python -m bench.docgen --check --run .", 60, time.monotonic() - start))
    return rows


def _row(command: str, budget_s: int, wall: float) -> dict:
    print(f"ok   {wall:6.1f} s  {command}", flush=True)
    return {"command": command, "budget_s": budget_s, "wall_s": round(wall, 1)}


# ------------------------------------------------------------------ documented commands and docs


def runnable_commands(paths: list[Path]) -> list[tuple[str, str, str]]:
    """(file, command, the reply the docs show or "") of each command in a ```sh runnable block:
    a command runs on while its quotes are open or its line ends in a backslash; the lines after
    it up to the next command or blank line are its documented reply."""
    from markdown_it import MarkdownIt

    found = []
    for path in paths:
        for token in MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8")):
            if token.type != "fence" or token.info.split()[:2] != ["sh", "runnable"]:
                continue
            command, reply = "", []
            for line in [*token.content.splitlines(), ""]:
                if command and _complete(command) and (not line.strip() or not line.startswith(("{", " "))):
                    found.append((path.name, command, "\n".join(reply)))
                    command, reply = "", []
                if command and not _complete(command):
                    command += "\n" + line
                elif command:
                    reply.append(line)
                elif line.strip():
                    command = line
    return found


def _complete(command: str) -> bool:
    if command.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(command, comments=True)
    except ValueError:  # a quote still open
        return False
    return True


def run_documented_commands(cwd: Path, env: dict, port: int) -> int:
    """Each runnable command of readme.md and docs/ against the smoke server (localhost:8000 is its
    port): it must exit 0 and answer, per-request ids aside, the reply the docs show."""
    from bench.docgen import fixed

    commands = runnable_commands([cwd / "readme.md", *sorted((cwd / "docs").glob("*.md"))])
    for name, command, documented in commands:
        argv = shlex.split(command.replace("localhost:8000", f"127.0.0.1:{port}"), comments=True)
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise SmokeError(f"{name}: `{command}` exited {proc.returncode}{_tail(proc.stderr)}")
        if documented and fixed(json.loads(proc.stdout)) != json.loads(documented):
            raise SmokeError(f"{name}: `{command}` answered {proc.stdout[:300]}, not what the docs show")
    return len(commands)


def check_docs(cwd: Path, env: dict) -> None:
    """Every generated passage of the copy's docs against this run (bench.docgen --check --run)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.docgen", "--check", "--run", "."],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise SmokeError(f"the docs do not match this run: run `make docs`{_tail(proc.stdout + proc.stderr, 40)}")


def full_run(workdir: Path) -> Path:
    """train.py and the four analyses with their defaults in a fresh copy: the run the docs quote (make docs)."""
    fresh_copy(workdir)
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    for step in STEPS[: STEPS.index(SERVER)]:
        print(f"ok   {run_step(step, workdir, env):6.1f} s  {step.command}", flush=True)
    return workdir


def budget_table() -> str:
    """The budgets as the Markdown table of docs/testing.md (a test keeps the two equal)."""
    lines = ["| command | budget |", "| --- | --- |"]
    lines += [f"| `{s.command}` | {s.budget_s} s |" for s in STEPS]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="reports/smoke.json", help="where the measured wall times go")
    p.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="heart-smoke-"))
    load_start = os.getloadavg()[0]
    print(f"smoke: a fresh copy in {workdir}; load average {load_start:.2f} on {os.cpu_count()} CPUs", flush=True)
    start = time.monotonic()
    try:
        rows = smoke(workdir)
    except SmokeError as e:
        print(f"error: smoke: {e}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    total = time.monotonic() - start
    print(
        format_table(
            ["command", "budget (s)", "wall (s)"], [[r["command"], r["budget_s"], r["wall_s"]] for r in rows], digits=1
        )
    )
    load_end = os.getloadavg()[0]
    print(
        f"all {len(rows)} steps passed in {total:.0f} s (load average {load_start:.2f} -> {load_end:.2f}); "
        "reports/index.html has every section"
    )
    summary = {"cpus": os.cpu_count(), "load_average": [load_start, load_end], "total_s": round(total, 1)}
    write_json(args.out, {**summary, "steps": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
