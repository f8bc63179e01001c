"""`fusion eval score` from the command line: results, saved files and one-line errors."""

from __future__ import annotations

import json

import pytest

from fusion.cli import main


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("fusion: error: ") and "\n" not in err
    return err


BENCHMARKS = (
    "mme mmbench mmbench_cn seed scienceqa textvqa vizwiz pope ai2d chartqa docvqa ocrbench mmmu mmstar realworldqa "
    "cvbench mmvp mmvet llavabench"
).split()


def test_every_benchmark_has_a_score_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "score", "--help"])
    assert exit_.value.code == 0
    listed = capsys.readouterr().out
    assert all(f"    {bench} " in listed or f"    {bench}\n" in listed for bench in BENCHMARKS)


def test_score_writes_result(tmp_path, capsys):
    ann = jsonl(tmp_path / "ann.jsonl", [{"question_id": 1, "options": ["x", "y"], "answer": "B"}])
    ans = jsonl(tmp_path / "a.jsonl", [{"question_id": 1, "text": "y"}])
    assert (
        main(
            [
                "eval",
                "score",
                "ai2d",
                "--answers",
                str(ans),
                "--annotations",
                str(ann),
                "--out",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert printed["headline"] == saved["headline"] == {"AI2D": 100.0}
    assert saved["answers"] == str(ans) and "model" not in saved  # no run record beside these answers


def test_score_errors_are_one_line(tmp_path, capsys):
    ann = jsonl(tmp_path / "ann.jsonl", [{"question_id": 1, "label": "yes"}])
    bad = tmp_path / "a.jsonl"
    bad.write_text('{"question_id": 1, "text": "Yes"}\n{"question_id": 2, "text": \n')
    assert main(["eval", "score", "pope", "--answers", str(bad), "--annotations", str(ann)]) == 2
    assert "a.jsonl:2: not valid JSON" in one_line_error(capsys)
    assert main(["eval", "score", "pope", "--answers", str(tmp_path / "nope.jsonl"), "--annotations", str(ann)]) == 2
    err = one_line_error(capsys)
    assert "--answers: " in err and "does not exist" in err
    bad.write_text('{"question_id": 1}\n')
    assert main(["eval", "score", "pope", "--answers", str(bad), "--annotations", str(ann)]) == 2
    assert "answer 1 needs question_id and text" in one_line_error(capsys)
    good = jsonl(tmp_path / "g.jsonl", [{"question_id": 1, "text": "Yes"}])
    assert main(["eval", "score", "pope", "--answers", str(good)]) == 2
    assert "--annotations / --annotation-dir" in one_line_error(capsys)
    assert main(["eval", "score", "vizwiz", "--answers", str(good)]) == 2
    assert "--annotations / --export" in one_line_error(capsys)
    dict_file = tmp_path / "answer_dict_val.json"
    dict_file.write_text("{}")
    assert main(["eval", "score", "mmmu", "--answers", str(good), "--answer-dict", str(dict_file)]) == 2
    assert "need --questions" in one_line_error(capsys)
    with pytest.raises(SystemExit):  # an unknown benchmark is an argparse error
        main(["eval", "score", "nope"])


def test_mme_tool_folder_needs_no_answers(tmp_path, capsys):
    (tmp_path / "tool").mkdir()
    (tmp_path / "tool" / "OCR.txt").write_text("1.jpg\tIs it A?\tYes\tYes\n1.jpg\tIs it B?\tNo\tyes\n")
    assert main(["eval", "score", "mme", "--results-dir", str(tmp_path / "tool")]) == 0
    # acc 1/2, acc+ 0: 50 points.
    assert json.loads(capsys.readouterr().out)["headline"] == {"MME_P": 50.0}


def test_vizwiz_export_with_the_question_file(tmp_path):
    questions = jsonl(tmp_path / "q.jsonl", [{"question_id": 0, "image": "VizWiz_test_00000000.jpg", "text": "What?"}])
    ans = jsonl(tmp_path / "a.jsonl", [{"question_id": 0, "text": "A Can."}])  # LLaVA-style: no image field
    up = tmp_path / "upload.json"
    assert (
        main(["eval", "score", "vizwiz", "--answers", str(ans), "--questions", str(questions), "--export", str(up)])
        == 0
    )
    assert json.loads(up.read_text()) == [{"image": "VizWiz_test_00000000.jpg", "answer": "can"}]
