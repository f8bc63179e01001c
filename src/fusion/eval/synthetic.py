"""Held-out synthetic sets (``fusion synth`` writes ``questions.jsonl`` with the answers): exact-match
accuracy overall, per category and per instruction type."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from .choice import choose
from .common import join, missing_note, pct, result
from .files import id_key, read_records
from .prompts import options_of


def normalize_answer(text: str) -> str:
    """Case, surrounding space and final punctuation do not count; inner words do."""
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(".!")


def is_correct(answer: str, record: dict[str, Any]) -> bool:
    """A multiple-choice answer is read with MMBench's rule (letter, then option text); any other answer
    must equal the reference after :func:`normalize_answer`."""
    options = options_of(record)
    if options:
        return choose(answer, options, "mmbench") == str(record["answer"]).strip().upper()
    return normalize_answer(answer) == normalize_answer(str(record["answer"]))


def score_synth(answers: list[dict[str, Any]], annotations: Path, allow_missing: bool = False) -> dict[str, Any]:
    truth = {id_key(r["question_id"]): r for r in read_records(annotations)}
    pairs, missing = join(answers, truth, allow_missing)
    hits: list[bool] = []
    groups: dict[str, dict[str, list[bool]]] = {"per_category": defaultdict(list), "per_type": defaultdict(list)}
    for a, rec in pairs:
        ok = is_correct(a["text"], rec)
        hits.append(ok)
        groups["per_category"][str(rec.get("category"))].append(ok)
        groups["per_type"][str(rec.get("instruction_type") or rec.get("kind"))].append(ok)
    acc = pct(sum(hits), len(hits))
    metrics: dict[str, Any] = {"accuracy": acc}
    for name, table in groups.items():
        metrics[name] = {k: pct(sum(v), len(v)) for k, v in sorted(table.items())}
        metrics[name.replace("per_", "count_per_")] = {k: len(v) for k, v in sorted(table.items())}
    return result("synth", {"Synth": acc}, metrics, len(hits), len(missing), missing_note(missing, len(truth)))
