"""LLM answers -> LLaVA conversations, per instruction type. Malformed answers raise QAFormatError."""

from __future__ import annotations

import json
import re
from typing import Any

LETTERS = "ABCD"
MC_SUFFIX = "Answer with the option's letter from the given choices directly."
SHORT_SUFFIX = "Answer the question using a single word or phrase."


class QAFormatError(ValueError):
    """An LLM answer is not the JSON the prompt asked for."""


def _json_list(text: str) -> list[dict[str, Any]]:
    match = re.search(r"\[.*\]", text, re.DOTALL)  # models like to wrap JSON in prose or code fences
    if match is None:
        raise QAFormatError("no JSON list in the answer")
    try:
        items = json.loads(match.group(0))
    except json.JSONDecodeError as err:
        raise QAFormatError(f"invalid JSON: {err.msg}") from err
    if not isinstance(items, list) or not items or not all(isinstance(x, dict) for x in items):
        raise QAFormatError("expected a non-empty list of objects")
    return items


def to_conversation(answer: str, instruction_type: str) -> list[dict[str, str]]:
    """Turns into alternating human / gpt turns (the image marker is added by the exporter)."""
    items = _json_list(answer)
    turns: list[dict[str, str]] = []
    for n, item in enumerate(items):
        question = str(item.get("question", "")).strip()
        if not question:
            raise QAFormatError(f"item {n} has no question")
        if instruction_type == "multiple_choice":
            options = item.get("options")
            if not isinstance(options, list) or len(options) != 4 or not all(str(o).strip() for o in options):
                raise QAFormatError(f"item {n} needs 4 non-empty options")
            letter = str(item.get("answer", "")).strip().upper()[:1]
            if letter not in LETTERS:
                raise QAFormatError(f"item {n}: answer {item.get('answer')!r} is not one of A-D")
            listed = "\n".join(f"{LETTERS[i]}. {str(o).strip()}" for i, o in enumerate(options))
            turns += [
                {"from": "human", "value": f"{question}\n{listed}\n{MC_SUFFIX}"},
                {"from": "gpt", "value": letter},
            ]
        else:
            answer_text = str(item.get("answer", "")).strip()
            if not answer_text:
                raise QAFormatError(f"item {n} has no answer")
            if instruction_type in ("short_conversation", "contrast_short"):
                question = f"{question}\n{SHORT_SUFFIX}"
            turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer_text}]
    return turns
