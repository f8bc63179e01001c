"""Benchmarks scored by a GPT judge: the files their official judges read (nothing is sent anywhere).

- MM-Vet: ``{"v1_0": "<answer>", ...}``, the input of MM-Vet's evaluator (``mm-vet_evaluator.py`` /
  its notebook); ids already of the ``v1_<n>`` form are kept, bare ones get the prefix, as LLaVA's
  converter writes them.
- LLaVA-Bench (in-the-wild): answer JSONL rows ``{question_id, prompt, text, answer_id, model_id,
  metadata}`` as LLaVA's ``model_vqa`` writes them, the input of its ``eval_gpt_review_bench.py``
  (with the benchmark's questions, context and GPT-4 answers) and ``summarize_gpt_review.py``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from .common import result
from .files import EvalInputError, id_key, write_json, write_jsonl


def mmvet_key(question_id: Any) -> str:
    key = id_key(question_id)
    return key if key.startswith("v1_") else f"v1_{key}"


def export_mmvet(answers: list[dict[str, Any]], path: Path) -> dict[str, Any]:
    data: dict[str, str] = {}
    for a in answers:
        key = mmvet_key(a["question_id"])
        if key in data:
            raise EvalInputError(f"two answers to MM-Vet question {key}")
        data[key] = a["text"]
    write_json(path, data)
    notes = [f"wrote {path} for MM-Vet's GPT-4 evaluator; put its total in a results file to add MM-Vet to the table"]
    return result("mmvet", {}, {"exported": str(path)}, len(data), 0, notes)


def export_llava_bench(answers: list[dict[str, Any]], path: Path, model_id: str | None = None) -> dict[str, Any]:
    rows, seen = [], set()
    for a in answers:
        key = id_key(a["question_id"])
        if key in seen:
            raise EvalInputError(f"two answers to LLaVA-Bench question {key}")
        seen.add(key)
        mid = model_id or a.get("model_id") or "fusion"
        rows.append(
            {
                "question_id": a["question_id"],
                "prompt": a.get("prompt", ""),
                "text": a["text"],
                "answer_id": hashlib.sha256(f"{mid}/{key}".encode()).hexdigest()[:22],
                "model_id": mid,
                "metadata": {},
            }
        )
    write_jsonl(path, rows)
    notes = [f"wrote {path} for LLaVA's GPT review (eval_gpt_review_bench.py, summarize_gpt_review.py)"]
    return result("llavabench", {}, {"exported": str(path)}, len(rows), 0, notes)
