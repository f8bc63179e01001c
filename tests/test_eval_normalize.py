"""VQA answer normalization and VQA accuracy on hand-worked cases."""

from __future__ import annotations

import pytest

from fusion.eval.normalize import normalize_answer, vqa_accuracy


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Two dogs.", "2 dogs"),  # number word, final period
        ("The  Cat", "cat"),  # article, case, spaces
        ("dont", "don't"),  # contraction without its apostrophe
        ("Ive", "ive"),  # the table's capitalized keys never match after lower-casing
        ("1,000", "1000"),  # commas go first
        ("3.5", "3.5"),  # a period before a digit stays
        ("Hello.World", "helloworld"),  # any other period goes
        ("a dog's bone", "dog 's bone"),  # 's split off, article dropped
        ("yes!", "yes"),
        ("left-side", "left side"),  # punctuation inside a word becomes a space
        ("x - y", "x y"),  # punctuation touching a space is deleted
        ("none", "0"),
        ("\tten\n", "10"),
        ("what?", "what"),
        ("", ""),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_vqa_accuracy_leave_one_out():
    humans = ["2"] * 2 + ["3"] * 8
    # Leaving out one of the two "2"s leaves 1 match (1/3); leaving out a "3" leaves 2 (2/3): (2/3 + 8*2/3) / 10.
    assert vqa_accuracy("two", humans) == pytest.approx(0.6)
    assert vqa_accuracy("3", humans) == 1.0
    assert vqa_accuracy("", humans) == 0.0
    # Exactly 3 humans agree: 2/3 when one of them is left out (3 ways), 1 otherwise (7 ways).
    assert vqa_accuracy("The cat.", ["cat"] * 3 + ["dog"] * 7) == pytest.approx(0.9)
    with pytest.raises(ValueError):
        vqa_accuracy("cat", [])
