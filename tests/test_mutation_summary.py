"""bench.mutation_summary: the score make mutation reports is read from mutmut's own result files."""

from __future__ import annotations

import json

import pytest

from bench.mutation_summary import main, summarise, table


def write_meta(root, module_path, codes):
    path = root / f"{module_path}.meta"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"exit_code_by_key": codes}), encoding="utf-8")


@pytest.fixture
def mutants(tmp_path):
    root = tmp_path / "mutants"
    # exit codes as mutmut writes them: 1 killed, 0 survived, 36 timeout, 33 no tests, None not run yet
    write_meta(root, "heart/decision.py", {"a_1": 1, "a_2": 1, "a_3": 1, "a_4": 0, "a_5": 36, "a_6": 33, "a_7": None})
    write_meta(root, "heart/serving/contract.py", {"b_1": 1, "b_2": 3})
    write_meta(root, "heart/model.py", {"c_1": None, "c_2": None})
    return root


def test_score_is_killed_over_checked_and_everything_else_counts_against_it(mutants):
    rows = summarise(mutants)["modules"]
    decision = rows["heart.decision"]
    # 3 killed of 6 checked (the mutant not yet run is left out; survivor, timeout and no-tests count)
    assert (decision["killed"], decision["survived"], decision["timeout"], decision["no tests"]) == (3, 1, 1, 1)
    assert (decision["not checked"], decision["total"], decision["score"]) == (1, 7, 0.5)
    assert decision["not_killed"] == ["a_4", "a_5", "a_6", "a_7"]
    # exit code 3 (pytest's internal error) is a kill in mutmut's own map; nested packages get dotted names
    assert rows["heart.serving.contract"]["score"] == 1.0
    assert rows["heart.model"]["score"] is None


def test_overall_adds_the_modules_up(mutants):
    overall = summarise(mutants)["overall"]
    assert (overall["killed"], overall["total"], overall["not checked"]) == (5, 11, 3)
    assert overall["score"] == round(5 / 8, 4)


def test_the_table_shows_checked_and_a_dash_for_a_module_not_run(mutants):
    lines = table(summarise(mutants)).splitlines()
    assert lines[0].split() == ["module", "killed", "survived", "timeout", "no", "tests", "checked", "total", "score"]
    assert lines[1].split() == ["heart.decision", "3", "1", "1", "1", "6", "7", "50.0%"]
    assert lines[2].split() == ["heart.model", "0", "0", "0", "0", "0", "2", "-"]
    assert lines[-1].split() == ["overall", "5", "1", "1", "1", "8", "11", "62.5%"]


def test_main_writes_the_json_with_the_wall_time(mutants, tmp_path, capsys):
    out = tmp_path / "reports" / "mutation.json"
    assert main(["--mutants", str(mutants), "--out", str(out), "--wall-seconds", "613"]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["wall_seconds"] == 613 and written["modules"]["heart.decision"]["killed"] == 3
    assert "wall time: 613 s" in capsys.readouterr().out


def test_main_without_results_says_to_run_make_mutation(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--mutants", str(tmp_path / "nothing")])
    assert e.value.code == 2
    assert "run `make mutation` first" in capsys.readouterr().err
