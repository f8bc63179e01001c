"""Results tables and the comparison with the paper's numbers."""

from __future__ import annotations

import json

import pytest

from fusion.cli import main
from fusion.eval import tables
from fusion.eval.files import EvalInputError


def result_file(path, headline, model_id="my-fusion"):
    data = {"benchmark": "x", "headline": headline, "metrics": {}, "n": 1, "missing": 0, "notes": []}
    data["model"] = {"model_id": model_id}
    path.write_text(json.dumps(data))
    return path


def test_paper_numbers_are_complete_and_match_the_issue():
    data = tables.paper_results()
    assert set(data["models"]) == {
        "FUSION-X-Phi3.5-3B",
        "FUSION-Phi3.5-3B",
        "FUSION-X-LLaMA3.1-8B",
        "FUSION-LLaMA3.1-8B",
    }
    for entry in data["models"].values():
        assert list(entry["scores"]) == data["columns"]
        assert all(isinstance(v, float) for v in entry["scores"].values())
    name, scores = tables.paper_model("fusion-x-3b")
    assert name == "FUSION-X-Phi3.5-3B"
    # The figures quoted in the project's issue.
    assert {k: scores[k] for k in ("MMB_EN", "POPE", "MME_P", "TextVQA")} == {
        "MMB_EN": 80.3,
        "POPE": 88.7,
        "MME_P": 1582.1,
        "TextVQA": 73.9,
    }
    assert set(data["notes"]) <= set(data["columns"])
    assert set(data["compare_with"].values()) <= set(tables.columns())
    with pytest.raises(EvalInputError, match="no paper numbers"):
        tables.paper_model("fusion-l-3b")


def test_table_from_result_files(tmp_path):
    a = result_file(tmp_path / "pope.json", {"POPE": 87.25})
    b = result_file(tmp_path / "mme.json", {"MME_P": 1500.5, "MME_C": 400.0})
    c = result_file(tmp_path / "other.json", {"POPE": 80.0}, model_id="baseline")
    table = tables.build_table([a, b, c], extra=None)
    assert table["columns"] == ["POPE", "MME_P", "MME_C"]  # the paper's order
    assert [r["model"] for r in table["rows"]] == ["my-fusion", "baseline"]
    md = tables.table_markdown(table)
    assert "| my-fusion | 87.2 | 1500.5 | 400.0 |" in md and "| baseline | 80.0 | - | - |" in md
    # A table JSON is an input too, and hand-set cells join the row.
    (tmp_path / "t.json").write_text(json.dumps(tables.build_table([a])))
    again = tables.build_table([tmp_path / "t.json"], extra={"MM-Vet": 58.1})
    assert again["rows"][0]["scores"] == {"POPE": 87.25, "MM-Vet": 58.1}
    with pytest.raises(EvalInputError, match="POPE given twice"):
        tables.build_table([a, a])
    with pytest.raises(EvalInputError, match="unknown column"):
        tables.build_table([a], extra={"Nope": 1.0})


def test_compare_with_the_paper(tmp_path):
    a = result_file(tmp_path / "pope.json", {"POPE": 87.7})
    b = result_file(tmp_path / "mmvp.json", {"MMVP": 40.0, "MMVP_question": 78.0})
    comparison = tables.compare(tables.build_table([a, b]), "fusion-x-3b")
    rows = {r["benchmark"]: r for r in comparison["rows"]}
    assert rows["POPE"]["diff"] == pytest.approx(-1.0)
    # The authors' MMVP script counts questions, not pairs: compared with MMVP_question.
    assert rows["MMVP"]["compared_with"] == "MMVP_question" and rows["MMVP"]["diff"] == pytest.approx(-0.1)
    assert rows["TextVQA"]["ours"] is None and rows["TextVQA"]["paper"] == 73.9
    md = tables.compare_markdown(comparison)
    assert "| POPE | 87.7 | 88.7 | -1.0 |" in md and "| MMVP (MMVP_question) | 78.0 | 78.1 | -0.1 |" in md
    two = tables.build_table([a, result_file(tmp_path / "x.json", {"POPE": 1.0}, model_id="other")])
    with pytest.raises(EvalInputError, match="2 models"):
        tables.compare(two, "fusion-x-3b")


def test_table_and_compare_commands(tmp_path, capsys):
    a = result_file(tmp_path / "pope.json", {"POPE": 87.7})
    assert main(["eval", "table", str(a), "--md", str(tmp_path / "t.md"), "--json", str(tmp_path / "t.json")]) == 0
    assert "| my-fusion | 87.7 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "t.json").read_text())["rows"][0]["scores"] == {"POPE": 87.7}
    assert (tmp_path / "t.md").read_text().startswith("| model | POPE |")
    assert main(["eval", "compare", str(a), "--paper", "fusion-x-3b", "--max-diff", "2"]) == 0
    assert main(["eval", "compare", str(a), "--paper", "fusion-x-3b", "--max-diff", "0.5"]) == 1
    assert "POPE (-1.0)" in capsys.readouterr().err
    assert main(["eval", "compare", str(a), "--paper", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fusion: error: no paper numbers for 'nope'") and "\n" not in err
    assert main(["eval", "table", str(tmp_path / "missing.json")]) == 2
    assert main(["eval", "table", str(a), "--set", "MM-Vet:58"]) == 2


def test_every_benchmark_fills_known_columns():
    from fusion.eval.benchmarks import BENCHMARKS

    known = set(tables.columns())
    for bench in BENCHMARKS.values():
        assert set(bench.columns) <= known, bench.name
    covered = {c for b in BENCHMARKS.values() for c in b.columns}
    # Every column of the paper's table has a scorer or an export, except the three said to have none.
    assert set(tables.paper_results()["columns"]) - covered == set(tables.paper_results()["no_scorer"])
