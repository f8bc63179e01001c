"""Scorers on hand-worked cases, and the runner end to end on a tiny generated benchmark."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image, ImageDraw

from fusion.eval import scoring
from fusion.eval.cli import score_answers
from fusion.eval.prompts import MULTIPLE_CHOICE, SHORT_ANSWER, format_question
from fusion.eval.runner import EvalInputError, read_questions
from fusion.tiny import EMBEDDED_CHECKPOINT

from .conftest import REPO


def test_vqa_normalization_and_accuracy():
    assert scoring.normalize_vqa_answer("Two dogs.") == "2 dogs"
    assert scoring.normalize_vqa_answer("The  Cat") == "cat"
    assert scoring.normalize_vqa_answer("dont") == "don't"
    assert scoring.normalize_vqa_answer("1,000") == "1000"
    # 2 of 10 humans said "2": each leave-one-out subset has 1 or 2 matches -> (8 * 2/3 + 2 * 1/3) / 10.
    humans = ["2"] * 2 + ["3"] * 8
    assert scoring.vqa_accuracy("two", humans) == pytest.approx((8 * 2 / 3 + 2 * 1 / 3) / 10)
    assert scoring.vqa_accuracy("3", humans) == 1.0
    assert scoring.vqa_accuracy("", humans) == 0.0


def test_pope_metrics_by_hand():
    preds = ["Yes, there is.", "No.", "yes", "There is no dog.", "I am not sure"]
    labels = ["yes", "yes", "no", "no", "yes"]
    m = scoring.pope_metrics(preds, labels)
    # tp=1 (0), fn=2 (1, 4: unclear counts as no), fp=1 (2), tn=1 (3)
    assert m == {"accuracy": 2 / 5, "precision": 0.5, "recall": 1 / 3, "f1": pytest.approx(0.4), "yes_ratio": 2 / 5}


def test_mme_acc_and_acc_plus():
    rows = [
        {"category": "color", "image": "a", "prediction": "Yes", "answer": "Yes"},
        {"category": "color", "image": "a", "prediction": "No", "answer": "No"},
        {"category": "color", "image": "b", "prediction": "Yes", "answer": "Yes"},
        {"category": "color", "image": "b", "prediction": "Yes", "answer": "No"},
        {"category": "code_reasoning", "image": "c", "prediction": "no", "answer": "No"},
        {"category": "code_reasoning", "image": "c", "prediction": "", "answer": "Yes"},
    ]
    s = scoring.mme_scores(rows)
    assert s["color"] == pytest.approx(100 * (3 / 4 + 1 / 2))
    assert s["code_reasoning"] == pytest.approx(100 * (1 / 2 + 0))
    assert s["perception"] == pytest.approx(s["color"]) and s["cognition"] == pytest.approx(50.0)


def test_choice_extraction_corner_cases():
    options = {"A": "red", "B": "blue", "C": "green", "D": "12 apples"}
    assert scoring.extract_choice("B", options) == "B"
    assert scoring.extract_choice("(C) green", options) == "C"
    assert scoring.extract_choice("The answer is D.", options) == "D"
    assert scoring.extract_choice("blue", options) == "B"  # option text instead of a letter
    assert scoring.extract_choice("It is 12 apples", options) == "D"
    assert scoring.extract_choice("", options) is None
    assert scoring.extract_choice("red or blue", options) is None  # ambiguous
    assert scoring.circular_accuracy({"q1": [True, True, True, True], "q2": [True, False, True, True]}) == 0.5


def test_anls_and_relaxed_accuracy():
    assert scoring.anls("Hello", ["hello"]) == 1.0
    assert scoring.anls("helo", ["hello"]) == pytest.approx(0.8)
    assert scoring.anls("xyz", ["hello"]) == 0.0
    assert scoring.relaxed_accuracy("104", "100") == 1.0
    assert scoring.relaxed_accuracy("106", "100") == 0.0
    assert scoring.relaxed_accuracy("12%", "12") == 1.0
    assert scoring.relaxed_accuracy("Yes", "yes") == 1.0
    assert scoring.relaxed_accuracy("", "0") == 0.0


def test_prompt_suffixes():
    q = format_question({"text": "What color?", "options": ["red", "blue"]})
    assert q == f"What color?\nA. red\nB. blue\n{MULTIPLE_CHOICE}"
    assert format_question({"text": "Count?", "kind": "short"}).endswith(SHORT_ANSWER)


def _bench(tmp_path, n=6):
    images = tmp_path / "imgs"
    images.mkdir()
    questions, truth = [], []
    for i in range(n):
        img = Image.new("RGB", (40, 30), "white")
        ImageDraw.Draw(img).ellipse((5, 5, 25, 25), fill=(200, 20 * i, 20))
        img.save(images / f"{i}.png")
        questions.append(
            {
                "question_id": i,
                "image": f"{i}.png",
                "text": "Is there a circle?",
                "kind": "short",
                "category": "adversarial" if i % 2 else "random",
            }
        )
        truth.append(
            {"question_id": i, "answer": "yes" if i % 3 else "no", "category": "adversarial" if i % 2 else "random"}
        )
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    return images, truth


def test_runner_resume_shards_and_score(tmp_path):
    images, truth = _bench(tmp_path, n=12)
    base = [
        sys.executable,
        "-m",
        "fusion.cli",
        "eval",
        "run",
        "--model",
        str(EMBEDDED_CHECKPOINT),
        "--questions",
        str(tmp_path / "q.jsonl"),
        "--images",
        str(images),
        "--batch-size",
        "2",
        "--max-new-tokens",
        "4",
    ]
    straight = subprocess.run(
        [*base, "--out", str(tmp_path / "a.jsonl")], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert straight.returncode == 0, straight.stderr[-2000:]
    # Killed after a few answers, then resumed: the same answers, none twice.
    proc = subprocess.Popen(
        [*base, "--out", str(tmp_path / "b.jsonl"), "--batch-size", "1"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not ((tmp_path / "b.jsonl").exists() and len((tmp_path / "b.jsonl").read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) < 12
    resumed = subprocess.run(
        [*base, "--out", str(tmp_path / "b.jsonl")], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # Two shards as two processes, merged in question order.
    procs = [
        subprocess.Popen(
            [*base, "--out", str(tmp_path / "c.jsonl"), "--shard", f"{i}/2"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-2000:]
    if not (tmp_path / "c.jsonl").exists():  # both finished together: merge with a no-op resume
        subprocess.run(
            [*base, "--out", str(tmp_path / "c.jsonl"), "--shard", "1/2"],
            cwd=REPO,
            timeout=300,
            check=True,
            capture_output=True,
        )

    def answers(name):
        return [(r["question_id"], r["text"]) for r in map(json.loads, (tmp_path / name).read_text().splitlines())]

    assert answers("a.jsonl") == answers("b.jsonl") == answers("c.jsonl")
    assert [qid for qid, _ in answers("a.jsonl")] == list(range(12))
    run_record = json.loads((tmp_path / "a.jsonl.run.json").read_text())
    assert run_record["query_len"] == 16 and run_record["decoding"]["max_new_tokens"] == 4
    rows = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    result = score_answers("pope", rows, truth)
    assert set(result) == {"adversarial", "random"}
    for split, m in result.items():
        expected_yes = sum(1 for r in rows if scoring.yes_no(r["text"]) == "yes" and r["category"] == split)
        assert m["yes_ratio"] == expected_yes / 6


def test_bad_question_files(tmp_path):
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question_id": 1, "text": "a"}\n{broken\n')
    with pytest.raises(EvalInputError, match=r"q.jsonl:2"):
        read_questions(bad)
    bad.write_text('{"question_id": 1, "text": "a"}\n{"question_id": 1, "text": "b"}\n')
    with pytest.raises(EvalInputError, match="duplicate"):
        read_questions(bad)


def test_mmmu_parsing_and_score():
    from fusion.eval.benchmarks import mmmu_correct, mmmu_parse_choice, mmmu_parse_open, mmmu_score

    choices, index2ans = ["A", "B", "C", "D"], {"A": "cat", "B": "dog", "C": "bird", "D": "fish"}
    assert mmmu_parse_choice("(B)", choices, index2ans) == "B"
    assert mmmu_parse_choice("The answer is C.", choices, index2ans) == "C"
    assert mmmu_parse_choice("I think the animal shown is clearly a dog here", choices, index2ans) == "B"
    drawn = mmmu_parse_choice("", choices, index2ans, seed="q1")
    assert drawn in choices and drawn == mmmu_parse_choice("", choices, index2ans, seed="q1")
    assert mmmu_correct(mmmu_parse_open("So the total is 12.50 dollars"), "12.5", "open")
    assert mmmu_correct(mmmu_parse_open("Therefore the answer is photosynthesis."), "Photosynthesis", "open")
    assert not mmmu_correct(mmmu_parse_open("It is 13"), "12", "open")
    answers = {
        "validation_Art_1": {
            "question_type": "multiple-choice",
            "answer": "A",
            "all_choices": choices,
            "index2ans": index2ans,
        },
        "validation_Math_1": {"question_type": "open", "answer": "7"},
    }
    result = mmmu_score({"validation_Art_1": "(A) cat", "validation_Math_1": "x = 8"}, answers)
    assert result == {"accuracy": 50.0, "Art": 100.0, "Math": 0.0}


def test_pair_group_and_ocr_benchmarks():
    from fusion.eval.benchmarks import cvbench_scores, mmvp_pair_accuracy, ocrbench_score

    assert mmvp_pair_accuracy([True, True, True, False, False, False]) == pytest.approx(100 / 3)
    rows = [("ADE20K", True), ("ADE20K", False), ("COCO", True), ("Omni3D", False), ("Omni3D", True)]
    s = cvbench_scores(rows)
    assert s["2D"] == 75.0 and s["3D"] == 50.0 and s["overall"] == 62.5
    ocr = ocrbench_score(
        [
            {"prediction": "The sign says STOP", "answers": ["stop"], "type": "Scene Text"},
            {
                "prediction": "x ^ 2 + 1",
                "answers": ["x^2+1"],
                "type": "Handwritten Mathematical Expression Recognition",
            },
            {"prediction": "", "answers": ["go"], "type": "Scene Text"},
        ]
    )
    assert ocr == {"Handwritten Mathematical Expression Recognition": 1, "Scene Text": 1, "total": 2}


def test_exports_and_results_table():
    from fusion.eval.benchmarks import export_mmbench_tsv, export_mmvet, export_vizwiz, results_table

    answers = [{"question_id": 3, "text": "B"}]
    assert export_vizwiz(answers, {3: "VizWiz_test_00000003.jpg"}) == [
        {"image": "VizWiz_test_00000003.jpg", "answer": "B"}
    ]
    assert export_mmvet(answers) == {"3": "B"}
    tsv = export_mmbench_tsv(answers, {3: {"text": "Which?", "options": ["x", "y"]}})
    assert tsv.splitlines()[1] == "3\tWhich?\tx\ty\t\t\tB"
    table = results_table({"POPE": 87.7, "MMB_EN": 80.3, "MMMU": 40.0}, "fusion-x-3b")
    assert "| POPE | 87.7 | 88.7 | -1.0 |" in table and "| MMMU | 40.0 | - | - |" in table
