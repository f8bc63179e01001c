"""Rule filters and duplicate removal; every dropped record gets a reason."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .qa import LETTERS, MC_SUFFIX


@dataclass
class FilterConfig:
    min_answer_chars: int = 1
    max_answer_chars: int = 2000
    max_question_chars: int = 1000
    # On word 3-grams of the whole conversation; None keeps exact deduplication only (the near-duplicate
    # check compares every pair, too slow for procedural sets of many thousand records).
    near_duplicate_jaccard: float | None = 0.9
    # False keeps records whose text repeats: procedural scenes with the same caption are still
    # different images (positions, sizes), and all of them are useful training samples.
    deduplicate: bool = True
    min_consistency: float | None = None  # with a judge: drop records scoring below


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + 3]) for i in range(max(1, len(words) - 2))}


def rule_problem(record: dict[str, Any], config: FilterConfig) -> str | None:
    """The first rule a record breaks, or None."""
    turns = record.get("conversations") or []
    if len(turns) < 2 or len(turns) % 2:
        return "format: conversation must alternate human/gpt turns"
    for i, turn in enumerate(turns):
        expected = "human" if i % 2 == 0 else "gpt"
        if turn.get("from") != expected:
            return f"format: turn {i} should be {expected}"
        value = str(turn.get("value", ""))
        if expected == "human" and len(value) > config.max_question_chars:
            return f"length: question {i // 2} is too long"
        if expected == "gpt" and not (config.min_answer_chars <= len(value.strip()) <= config.max_answer_chars):
            return f"length: answer {i // 2} has {len(value.strip())} characters"
        if expected == "gpt" and MC_SUFFIX in turns[i - 1]["value"]:
            listed = re.findall(r"^([A-D])\. ", turns[i - 1]["value"], re.MULTILINE)
            if value.strip() not in listed or value.strip() not in LETTERS:
                return f"options: answer {value!r} of question {i // 2} is not among the options"
    return None


class Deduplicator:
    """Drops exact and near duplicates (Jaccard of word 3-grams), keeping the first seen."""

    def __init__(self, threshold: float | None):
        self.threshold = threshold
        self.exact: set[str] = set()
        self.kept: list[set[tuple[str, ...]]] = []

    def problem(self, record: dict[str, Any], context: str = "") -> str | None:
        """``context`` (the image's description) is part of the key: the same question about two
        different images is not a duplicate."""
        text = context + " " + " ".join(t["value"] for t in record["conversations"])
        key = re.sub(r"\s+", " ", text.strip().lower())
        if key in self.exact:
            return "duplicate"
        self.exact.add(key)
        if self.threshold is None:
            return None
        sh = _shingles(text)
        for other in self.kept:
            if len(sh & other) / max(1, len(sh | other)) >= self.threshold:
                self.exact.discard(key)
                return "near-duplicate"
        self.kept.append(sh)
        return None
