"""VQA-accuracy benchmarks: TextVQA, VizWiz (and VQAv2-style JSONL), with the servers' normalization.

Annotation files read as published: TextVQA's ``TextVQA_0.5.1_val.json`` (``{"data": [...]}``),
VizWiz's ``val.json`` (a list keyed by image name), or JSONL ``{question_id, answers}``. LLaVA's
TextVQA question file numbers questions by image id; such answers are joined on (image id,
question text), as LLaVA's evaluator does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .common import join, missing_note, pct, result
from .files import EvalInputError, id_key, read_records
from .normalize import normalize_answer, vqa_accuracy
from .prompts import SHORT_ANSWER


def _human_answers(entry: dict[str, Any], where: str) -> list[str]:
    raw = entry.get("answers")
    if not isinstance(raw, list) or not raw:
        raise EvalInputError(f"{where}: no human answers")
    return [a["answer"] if isinstance(a, dict) else str(a) for a in raw]


def question_from_prompt(prompt: str) -> str:
    """The question of a LLaVA TextVQA prompt (its OCR-token line and answer instruction removed)."""
    if prompt.startswith("OCR tokens: "):
        match = re.search(r"Question: (.*?) Short answer:", prompt, re.DOTALL)
        if match:
            return match.group(1).strip()
    lines = [ln.strip() for ln in prompt.split("\n")]
    kept = [ln for ln in lines if ln and not ln.startswith("Reference OCR token") and ln != SHORT_ANSWER]
    return kept[0] if kept else ""


def score_textvqa(answers: list[dict[str, Any]], annotations: Path, allow_missing: bool = False) -> dict[str, Any]:
    entries = read_records(annotations)
    by_id = {id_key(e["question_id"]): e for e in entries if "question_id" in e}
    if answers and all(id_key(a["question_id"]) in by_id for a in answers):
        pairs, missing = join(answers, by_id, allow_missing)
    elif entries and "image_id" in entries[0] and "question" in entries[0]:
        truth = {f"{e['image_id']}\x00{e['question'].strip().lower()}": e for e in entries}

        def key(a: dict[str, Any]) -> str:
            return f"{a['question_id']}\x00{question_from_prompt(a.get('prompt', '')).lower()}"

        pairs, missing = join(answers, truth, allow_missing, answer_key=key, what="(image id, question)")
    else:
        raise EvalInputError(f"{annotations}: the answers' question ids are not in this annotation file")
    scores = [vqa_accuracy(a["text"], _human_answers(t, f"question {a['question_id']!r}")) for a, t in pairs]
    acc = pct(sum(scores), len(scores))
    return result(
        "textvqa",
        {"TextVQA": acc},
        {"accuracy": acc},
        len(scores),
        len(missing),
        missing_note(missing, len(pairs) + len(missing)),
    )


def _image_of(answer: dict[str, Any], images: dict[str, str] | None) -> str:
    if answer.get("image"):
        return Path(str(answer["image"])).name
    if images is not None and id_key(answer["question_id"]) in images:
        return images[id_key(answer["question_id"])]
    raise EvalInputError(
        f"answer {answer['question_id']!r} names no image; give the question file (--questions) to look it up"
    )


def score_vizwiz(
    answers: list[dict[str, Any]],
    annotations: Path,
    allow_missing: bool = False,
    images: dict[str, str] | None = None,
) -> dict[str, Any]:
    """VizWiz val: VQA accuracy keyed by image name (the test split is scored by the server: export it)."""
    entries = read_records(annotations)
    if entries and "image" in entries[0]:
        truth = {Path(str(e["image"])).name: e for e in entries}
        pairs, missing = join(answers, truth, allow_missing, answer_key=lambda a: _image_of(a, images), what="image")
    else:
        pairs, missing = join(answers, {id_key(e["question_id"]): e for e in entries}, allow_missing)
    scores, by_type = [], {}
    for a, t in pairs:
        s = vqa_accuracy(a["text"], _human_answers(t, f"question {a['question_id']!r}"))
        scores.append(s)
        if t.get("answer_type"):
            by_type.setdefault(t["answer_type"], []).append(s)
    acc = pct(sum(scores), len(scores))
    metrics = {"accuracy": acc, **{f"accuracy_{k}": pct(sum(v), len(v)) for k, v in sorted(by_type.items())}}
    return result(
        "vizwiz", {"VizWiz": acc}, metrics, len(scores), len(missing), missing_note(missing, len(pairs) + len(missing))
    )


def score_vqa(answers: list[dict[str, Any]], annotations: Path, allow_missing: bool = False) -> dict[str, Any]:
    """Any VQA-style set given as ``{question_id, answers}`` records (VQAv2, GQA-style exports, ...)."""
    truth = {id_key(e["question_id"]): e for e in read_records(annotations)}
    pairs, missing = join(answers, truth, allow_missing)
    scores = [vqa_accuracy(a["text"], _human_answers(t, f"question {a['question_id']!r}")) for a, t in pairs]
    acc = pct(sum(scores), len(scores))
    return result(
        "vqa",
        {"VQA": acc},
        {"accuracy": acc},
        len(scores),
        len(missing),
        missing_note(missing, len(pairs) + len(missing)),
    )


def export_vizwiz(answers: list[dict[str, Any]], images: dict[str, str] | None = None) -> list[dict[str, str]]:
    """The VizWiz server's upload: ``[{"image": "VizWiz_test_00000000.jpg", "answer": ...}]`` with the
    answers normalized by the server's processor (as LLaVA's converter does)."""
    return [{"image": _image_of(a, images), "answer": normalize_answer(a["text"])} for a in answers]


def question_images(questions_file: Path) -> dict[str, str]:
    """question id -> image file name, from a question file (for answers that do not carry the image)."""
    from .questions import read_questions

    return {
        id_key(q["question_id"]): Path(str(q["image"])).name for q in read_questions(questions_file) if q.get("image")
    }
