"""Text-reading benchmarks: DocVQA (ANLS), ChartQA (relaxed accuracy) and OCRBench.

- ANLS (DocVQA's metric, as its evaluation script computes it): both strings trimmed, lower-cased and
  their whitespace collapsed; NL = Levenshtein distance / the longer string's length (the lengths of
  the strings as given); a question scores ``1 - min NL`` over its answers, or 0 when that is below
  the threshold 0.5.
- Relaxed accuracy (ChartQA, after Methani et al.): when both prediction and target read as numbers
  (``12``, ``-3.5``, ``40%`` = 0.4) and the target is not 0, right within 5% relative error; otherwise
  an exact, case-insensitive string match. Units or words around a number make it a string.
- OCRBench: right when an answer occurs in the prediction (both lower-cased and trimmed, newlines as
  spaces); for handwritten formulas (HME100k) all spaces are removed and case is kept. The score is
  the number right (out of 1000 on the full set).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from .common import join, missing_note, pct, result
from .files import EvalInputError, id_key, read_records, write_json
from .prompts import MULTIPLE_CHOICE, MULTIPLE_CHOICE_CN, SHORT_ANSWER, VIZWIZ_UNANSWERABLE

CHARTQA_SUFFIX = "Answer the question with a single word."  # lmms-eval's ChartQA instruction
_INSTRUCTIONS = {SHORT_ANSWER, MULTIPLE_CHOICE, MULTIPLE_CHOICE_CN, VIZWIZ_UNANSWERABLE, CHARTQA_SUFFIX}

OCRBENCH_GROUPS = {
    "Text Recognition": (
        "Regular Text Recognition",
        "Irregular Text Recognition",
        "Artistic Text Recognition",
        "Handwriting Recognition",
        "Digit String Recognition",
        "Non-Semantic Text Recognition",
    ),
    "Scene Text-centric VQA": ("Scene Text-centric VQA",),
    "Doc-oriented VQA": ("Doc-oriented VQA",),
    "Key Information Extraction": ("Key Information Extraction",),
    "Handwritten Mathematical Expression Recognition": ("Handwritten Mathematical Expression Recognition",),
}


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def anls(prediction: str, answers: list[str], threshold: float = 0.5) -> float:
    """ANLS of one prediction in [0, 1]."""
    if not answers:
        raise ValueError("no reference answers")
    pred = " ".join(prediction.strip().lower().split())
    values = []
    for answer in answers:
        gt = " ".join(answer.strip().lower().split())
        length = max(len(answer.upper()), len(prediction.upper()))
        values.append(0.0 if length == 0 else levenshtein(gt, pred) / length)
    score = 1 - min(values)
    return 0.0 if score < threshold else score


def score_docvqa(
    answers: list[dict[str, Any]], annotations: Path, allow_missing: bool = False, export: Path | None = None
) -> dict[str, Any]:
    """DocVQA val (``val_v1.0.json`` with ``questionId`` / ``answers``, or JSONL). ``export`` writes the
    test server's upload ``[{"questionId": ..., "answer": ...}]``; a split without answers is export-only."""
    if export is not None:
        write_json(export, [{"questionId": _int_or_str(a["question_id"]), "answer": a["text"]} for a in answers])
    records = read_records(annotations)
    if records and all(not r.get("answers") for r in records):
        return result(
            "docvqa",
            {},
            {"exported": str(export) if export else None},
            len(answers),
            0,
            ["no answers in this split: exported only"],
        )
    truth = {id_key(r.get("questionId", r.get("question_id"))): r for r in records}
    pairs, missing = join(answers, truth, allow_missing)
    values = [anls(a["text"], [str(x) for x in t["answers"]]) for a, t in pairs]
    score = pct(sum(values), len(values))
    return result(
        "docvqa", {"DocVQA": score}, {"anls": score}, len(values), len(missing), missing_note(missing, len(truth))
    )


def _int_or_str(value: Any) -> Any:
    key = id_key(value)
    return int(key) if key.lstrip("-").isdigit() else key


def _to_float(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_correctness(prediction: str, target: str, max_relative_change: float = 0.05) -> bool:
    pred, gt = _to_float(prediction), _to_float(target)
    if pred is not None and gt:
        return abs(pred - gt) / abs(gt) <= max_relative_change
    return prediction.lower() == target.lower()


def strip_instructions(prompt: str) -> str:
    """A prompt without the answer-format lines the runner (or lmms-eval) appends."""
    return "\n".join(ln for ln in prompt.split("\n") if ln.strip() not in _INSTRUCTIONS).strip()


def score_chartqa(
    answers: list[dict[str, Any]], annotations: list[Path], allow_missing: bool = False
) -> dict[str, Any]:
    """ChartQA test: one or both of ``test_human.json`` / ``test_augmented.json`` (``imgname``, ``query``,
    ``label``; joined on image and question), or JSONL ``{question_id, answer, type}``."""
    truth: dict[str, dict[str, Any]] = {}
    by_query = False
    for path in annotations:
        for r in read_records(path):
            if "imgname" in r and "query" in r:
                by_query = True
                split = "human" if "human" in path.stem else ("augmented" if "augmented" in path.stem else path.stem)
                truth[f"{r['imgname']}\x00{r['query'].strip()}"] = {"answer": r["label"], "type": split}
            else:
                truth[id_key(r["question_id"])] = r
    if by_query:

        def key(a: dict[str, Any]) -> str:
            question = a.get("question") or strip_instructions(a.get("prompt", ""))
            return f"{Path(str(a.get('image', ''))).name}\x00{question.strip()}"

        pairs, missing = join(answers, truth, allow_missing, answer_key=key, what="(image, question)")
    else:
        pairs, missing = join(answers, truth, allow_missing)
    by_split: dict[str, list[bool]] = defaultdict(list)
    hits = []
    for a, t in pairs:
        ok = relaxed_correctness(a["text"], str(t["answer"]))
        hits.append(ok)
        if t.get("type"):
            by_split[str(t["type"]).removeprefix("test_").removesuffix("_test")].append(ok)
    acc = pct(sum(hits), len(hits))
    metrics = {"relaxed_accuracy": acc, **{f"relaxed_{k}": pct(sum(v), len(v)) for k, v in sorted(by_split.items())}}
    return result("chartqa", {"ChartQA": acc}, metrics, len(hits), len(missing), missing_note(missing, len(truth)))


def ocrbench_hit(prediction: str, answers: list[str] | str, dataset_name: str | None) -> bool:
    answers = answers if isinstance(answers, list) else [answers]
    if dataset_name == "HME100k":
        pred = prediction.strip().replace("\n", " ").replace(" ", "")
        return any(a.strip().replace("\n", " ").replace(" ", "") in pred for a in answers)
    pred = prediction.lower().strip().replace("\n", " ")
    return any(a.lower().strip().replace("\n", " ") in pred for a in answers)


def score_ocrbench(answers: list[dict[str, Any]], annotations: Path, allow_missing: bool = False) -> dict[str, Any]:
    """OCRBench (``OCRBench.json``: ``id``, ``dataset_name``, ``type``, ``answers``): the number right per
    type and group, the total, and the total as a percentage (the paper's column: 637 -> 63.7)."""
    records = read_records(annotations)
    truth = {id_key(r.get("id", r.get("question_id"))): r for r in records}
    pairs, missing = join(answers, truth, allow_missing)
    per_type: dict[str, int] = defaultdict(int)
    for a, t in pairs:
        if t.get("type") is None or t.get("answers") is None:
            raise EvalInputError(f"OCRBench item {t.get('id')!r} needs type and answers")
        per_type[t["type"]] += ocrbench_hit(a["text"], t["answers"], t.get("dataset_name"))
    total = sum(per_type.values())
    groups = {g: sum(per_type.get(t, 0) for t in types) for g, types in OCRBENCH_GROUPS.items()}
    score = pct(total, len(pairs))
    metrics = {
        "score": total,
        "out_of": len(pairs),
        "percent": score,
        "per_type": dict(sorted(per_type.items())),
        "groups": groups,
    }
    return result("ocrbench", {"OCRBench": score}, metrics, len(pairs), len(missing), missing_note(missing, len(truth)))
