"""The smoke stage's parts (bench/smoke.py; the run itself is `make smoke`, in CI), `python test.py`'s exit
status, and `make analyses` being the four scripts' default runs plus the report."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

import data_poisoning
import drift_analysis_ks
import explainability
import fairness_check
from bench import smoke

from conftest import ROOT


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_the_fresh_copy_is_a_clone_plus_working_tree_edits(tmp_path):
    repo, dest = tmp_path / "repo", tmp_path / "copy"
    (repo / "pkg").mkdir(parents=True)
    (repo / ".gitignore").write_text("/model.joblib\n/reports/\n")
    for name in ("pkg/kept.py", "pkg/edited.py", "deleted.py"):
        (repo / name).write_text("committed\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c")
    (repo / "pkg" / "edited.py").write_text("edited\n")
    (repo / "new.py").write_text("new\n")
    (repo / "model.joblib").write_text("ignored\n")
    (repo / "reports").mkdir()
    (repo / "reports" / "index.html").write_text("ignored\n")
    (repo / "deleted.py").unlink()
    dest.mkdir()
    assert smoke.fresh_copy(dest, repo) == 4
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == [".gitignore", "new.py", "pkg/edited.py", "pkg/kept.py"]
    assert (dest / "pkg" / "edited.py").read_text() == "edited\n"


def script(tmp_path, body: str) -> str:
    path = tmp_path / "step.py"
    path.write_text(body)
    return f"python {path}"


def test_a_step_passes_with_exit_0_and_its_documented_line(tmp_path):
    step = smoke.Step(script(tmp_path, "print('wrote reports/x.json')"), 30, "wrote reports/x.json")
    assert 0 < smoke.run_step(step, tmp_path, {}) < 30


@pytest.mark.parametrize(
    "body, expect, message",
    [
        ("import sys; print('oops', file=sys.stderr); sys.exit(2)", "", "exited 2:\noops"),
        ("print('something else')", "wrote", "did not print 'wrote':\nsomething else"),
        (
            "import traceback\ntry:\n    1 / 0\nexcept ZeroDivisionError:\n    traceback.print_exc()",
            "",
            "printed a traceback",
        ),
        ("import time; time.sleep(5)", "", "did not finish within its budget of 1 s"),
    ],
)
def test_a_step_fails_naming_the_command_and_why(tmp_path, body, expect, message):
    step = smoke.Step(script(tmp_path, body), 1, expect)
    with pytest.raises(smoke.SmokeError, match="^`python .*step.py` ") as e:
        smoke.run_step(step, tmp_path, {})
    assert message in str(e.value)


def test_the_budgets_in_the_docs_are_the_smoke_runs():
    assert smoke.budget_table() in (ROOT / "docs" / "testing.md").read_text()
    assert [s.command for s in smoke.STEPS if s.command.startswith("python ") and s.command.endswith(".py")] == [
        "python train.py",
        "python fairness_check.py",
        "python explainability.py",
        "python drift_analysis_ks.py",
        "python data_poisoning.py",
        "python heart_fastapi.py",
        "python batch_predict.py",
        "python monitor_performance.py",
        "python test.py",
    ]


def test_make_analyses_is_the_four_default_runs_then_the_whole_report():
    """What `make analyses` runs (make -n prints it): each script with flags that equal its defaults, so the
    smoke stage's bare runs (`python fairness_check.py`, ...) are what it does; then the page of every section."""
    dry = subprocess.run(["make", "-n", "analyses"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    lines = [shlex.split(line) for line in dry.splitlines() if line.startswith(".venv/bin/python ")]
    scripts = {"fairness_check.py": fairness_check, "explainability.py": explainability}
    scripts |= {"drift_analysis_ks.py": drift_analysis_ks, "data_poisoning.py": data_poisoning}
    runs = [words for words in lines if words[1] in scripts]
    assert [words[1] for words in runs] == list(scripts)
    for words in runs:
        module = scripts[words[1]]
        assert module.parse_args(words[2:]) == module.parse_args([]), words
    assert lines[-1] == [
        ".venv/bin/python",
        "-m",
        "heart.analyses.html_report",
        "--reports",
        "reports",
        "--card",
        "model.card.json",
    ]


def run_test_py(*args, env_path=None):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"PYTHONPATH": str(env_path)} if env_path else {}
    return subprocess.run(
        [sys.executable, "test.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )


def test_python_test_py_exits_non_zero_when_a_test_fails(tmp_path):
    """A plugin plants a failure in the one test selected: `python test.py` must report it and exit 1."""
    (tmp_path / "planted.py").write_text(
        "import pytest\n\n\n@pytest.hookimpl(tryfirst=True)\ndef pytest_runtest_call(item):\n"
        "    raise AssertionError('planted failure')\n"
    )
    proc = run_test_py("-p", "planted", "-k", "test_model_loads", env_path=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "planted failure" in proc.stdout and "1 failed" in proc.stdout


def test_python_test_py_passes_options_to_pytest_and_its_status_back():
    proc = run_test_py("-k", "no_such_test")
    assert proc.returncode == 5, proc.stdout  # pytest: no tests collected
    assert re.search(r"\b\d+ deselected", proc.stdout), proc.stdout


def test_the_smoke_target_runs_in_ci():
    assert "make smoke" in (ROOT / ".ci" / "run").read_text()
    assert "\nsmoke: " in (ROOT / "Makefile").read_text()


def test_the_run_time_table_states_each_budget():
    """docs/analyses.md, "Run time": one row per smoke step, its budget in the last column."""
    text = (ROOT / "docs" / "analyses.md").read_text().split("\n## Run time\n")[1].split("\n## ")[0]
    rows = [line for line in text.splitlines() if line.startswith("| `python ")]
    budgets = {row.split("`")[1]: row.rstrip(" |").rsplit("| ", 1)[1] for row in rows}
    assert budgets == {s.command: f"{s.budget_s} s" for s in smoke.STEPS}


def test_a_runnable_command_must_answer_what_the_docs_show(model_path, tmp_path):
    """The smoke stage's check of the docs' `sh runnable` blocks against a real server: the reply
    shown (per-request ids aside) passes, another probability fails, and so does a failing command."""
    import json

    import httpx

    from bench.docgen import fixed
    from heart.clients.harness import ApiServer

    patient = {"age": 54, "gender": "female"}
    command = (
        'curl -s localhost:8000/predict -H \'content-type: application/json\' -d \'{"age": 54,\n  "gender": "female"}\''
    )
    (tmp_path / "docs").mkdir()
    readme = tmp_path / "readme.md"
    with ApiServer(model_path, log=tmp_path / "server.log", ready_timeout=90) as api:
        reply = fixed(httpx.post(api.url + "/predict", json=patient).json())
        readme.write_text(f"```sh runnable\n{command}\n{json.dumps(reply)}\n```\n")
        assert smoke.run_documented_commands(tmp_path, dict(os.environ), api.port) == 1
        readme.write_text(f"```sh runnable\n{command}\n{json.dumps({**reply, 'probability': 0.5})}\n```\n")
        with pytest.raises(smoke.SmokeError, match="(?s)readme.md: .* not what the docs show"):
            smoke.run_documented_commands(tmp_path, dict(os.environ), api.port)
        readme.write_text("```sh runnable\ncurl -sf localhost:8000/no-such-route\n```\n")
        with pytest.raises(smoke.SmokeError, match="exited 22"):
            smoke.run_documented_commands(tmp_path, dict(os.environ), api.port)
