"""MMMU's answer parsing and scoring, with its official file formats."""

from __future__ import annotations

import json

import pytest

from fusion.eval import mmmu
from fusion.eval.files import EvalInputError

CHOICES = ["A", "B", "C", "D"]
INDEX2ANS = {"A": "cat", "B": "dog", "C": "bird", "D": "fish"}


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("(B)", "B"),
        ("The answer is C.", "C"),  # trailing period stripped, " C " found
        ("A", "A"),
        ("I think the animal shown is clearly a dog here", "B"),  # more than 5 words: option text
        ("a dog", None),  # option text in a short answer is not read: a random choice
        ("(A) is wrong, so (B)", "B"),  # the last bracketed letter wins
        ("The final answer is:\nD", "D"),
        ("", None),  # empty: a random choice
    ],
)
def test_parse_choice(response, letter):
    got = mmmu.parse_choice(response, CHOICES, INDEX2ANS, seed="q7")
    if letter is None:
        assert got in CHOICES and got == mmmu.parse_choice(response, CHOICES, INDEX2ANS, seed="q7")  # reproducible
    else:
        assert got == letter


def test_parse_open_and_correct():
    # "is " leaves the shortest tail "12.50 dollars": the number is read despite its unit.
    assert mmmu.correct("open", "12.5", mmmu.parse_open("So the total is 12.50 dollars"))
    assert mmmu.correct("open", "Photosynthesis", mmmu.parse_open("Therefore the answer is photosynthesis."))
    assert not mmmu.correct("open", "12", mmmu.parse_open("It is 13"))
    assert mmmu.correct("open", "1000", mmmu.parse_open("so it is 1,000"))  # thousands separator
    assert not mmmu.correct("open", "7", mmmu.parse_open(""))  # empty answer
    assert mmmu.correct("open", ["24", "twenty-four"], mmmu.parse_open("The result is twenty-four"))
    # One-letter golds are padded so that a letter inside a word does not count.
    assert not mmmu.correct("open", "a", mmmu.parse_open("the answer is cat"))
    assert mmmu.parse_open("x = 8") == [8.0]  # the tail after "=" in the last line, as a number
    assert mmmu.correct("multiple-choice", "B", "B") and not mmmu.correct("multiple-choice", "B", "b")


def test_score_official_files(tmp_path):
    predictions = {"validation_Art_1": "A", "validation_Math_1": "x = 8", "validation_Math_2": "so it is 1,000"}
    answer_dict = {
        "validation_Art_1": {"question_type": "multiple-choice", "ground_truth": "A"},
        "validation_Math_1": {"question_type": "open", "ground_truth": "7"},
        "validation_Math_2": {"question_type": "open", "ground_truth": "1000"},
        "validation_Art_Theory_3": {"question_type": "multiple-choice", "ground_truth": "C"},
    }
    (tmp_path / "pred.json").write_text(json.dumps(predictions))
    (tmp_path / "answer_dict_val.json").write_text(json.dumps(answer_dict))
    result = mmmu.score_mmmu_files(tmp_path / "answer_dict_val.json", predictions=tmp_path / "pred.json")
    # As MMMU's eval-only script: the predictions given are scored (2 of 3 right); the unanswered one is noted.
    assert result["headline"]["MMMU"] == pytest.approx(200 / 3)
    assert result["metrics"]["subjects"] == {"Art": {"accuracy": 100.0, "n": 1}, "Math": {"accuracy": 50.0, "n": 2}}
    assert result["metrics"]["disciplines"]["Science"] == {"accuracy": 50.0, "n": 2}
    assert result["missing"] == 1
    (tmp_path / "bad.json").write_text(json.dumps({"validation_Art_9": "A"}))
    with pytest.raises(EvalInputError, match="not in the answer dict"):
        mmmu.score_mmmu_files(tmp_path / "answer_dict_val.json", predictions=tmp_path / "bad.json")


def test_runner_answers_to_prediction_file(tmp_path):
    questions = [
        {
            "question_id": "validation_Art_1",
            "text": "Which?",
            "options": ["cat", "dog"],
            "question_type": "multiple-choice",
        },
        {"question_id": "validation_Math_1", "text": "How many?", "question_type": "open"},
    ]
    answers = [
        {"question_id": "validation_Art_1", "text": "I would say the one in the picture is a dog"},
        {"question_id": "validation_Math_1", "text": "7"},
    ]
    (tmp_path / "answer_dict_val.json").write_text(
        json.dumps(
            {
                "validation_Art_1": {"question_type": "multiple-choice", "ground_truth": "B"},
                "validation_Math_1": {"question_type": "open", "ground_truth": "7"},
            }
        )
    )
    result = mmmu.score_mmmu_files(
        tmp_path / "answer_dict_val.json", answers=answers, questions=questions, export=tmp_path / "pred.json"
    )
    assert result["headline"] == {"MMMU": 100.0}
    assert json.loads((tmp_path / "pred.json").read_text()) == {"validation_Art_1": "B", "validation_Math_1": "7"}
    with pytest.raises(EvalInputError, match="lists no options"):
        mmmu.predictions_from_answers(answers[:1], [{**questions[0], "options": None}])
