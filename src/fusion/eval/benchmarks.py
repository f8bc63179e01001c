"""Benchmark-specific rules beyond the shared scorers: MMMU parsing, MMVP pairs, CV-Bench averages,
OCRBench, submission / judge exports, and result tables compared with the paper."""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PAPER_RESULTS = json.loads((Path(__file__).parent / "paper_results.json").read_text(encoding="utf-8"))


# ----- MMMU -------------------------------------------------------------------------------------------
def mmmu_parse_choice(response: str, all_choices: list[str], index2ans: dict[str, str], seed: str = "") -> str:
    """MMMU's multiple-choice parsing: "(A)" / "A " / "A." marks first, then option text; the last
    mention wins when several appear; with none, a choice drawn at random (seeded by the question id,
    so scores are reproducible)."""
    text = " " + re.sub(r"[,.!?;:'\"]+$", "", response.strip()) + " "
    candidates: list[tuple[int, str]] = []
    for c in all_choices:
        for pattern in (f"({c})", f" {c} ", f" {c}.", f" {c},", f" {c})"):
            pos = text.rfind(pattern)
            if pos >= 0:
                candidates.append((pos, c))
    if not candidates and len(text.split()) > 5:
        for c, ans in index2ans.items():
            pos = text.lower().rfind(str(ans).lower())
            if ans and pos >= 0:
                candidates.append((pos, c))
    if not candidates:
        return random.Random(seed).choice(all_choices)
    return max(candidates)[1]


def _numbers(text: str) -> list[float]:
    out = []
    for m in re.findall(r"-?\d[\d,]*\.?\d*(?:e-?\d+)?", text):
        try:
            out.append(round(float(m.replace(",", "")), 2))
        except ValueError:
            continue
    return out


def mmmu_parse_open(response: str) -> list[Any]:
    """MMMU's open-answer parsing: the key parts after "answer is", "=" etc. (or the last sentence),
    as numbers (rounded to 2 decimals) and lower-cased strings."""
    sentences = [s for s in re.split(r"\.\s|\n", response.strip()) if s.strip()] or [response]
    keys = []
    for i, s in enumerate(sentences):
        indicators = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]
        if i == len(sentences) - 1:
            indicators.append("=")
        shortest = None
        for ind in indicators:
            if ind in s.lower():
                part = s.lower().split(ind)[-1].strip()
                if shortest is None or len(part) < len(shortest):
                    shortest = part
        if shortest and shortest not in (":", ",", ".", "!", "?", ";", "'"):
            keys.append(shortest)
    if not keys:
        keys = [response.strip()]
    preds: list[Any] = []
    for k in keys:
        preds.extend(_numbers(k))
        preds.append(k.strip().strip(".").lower())
    return list(dict.fromkeys(preds))


def mmmu_correct(prediction: str | list, answer: str | list, question_type: str) -> bool:
    if question_type == "multiple-choice":
        golds = answer if isinstance(answer, list) else [answer]
        return prediction in golds
    golds = answer if isinstance(answer, list) else [answer]
    for gold in golds:
        nums = _numbers(str(gold))
        if nums and any(isinstance(p, float) and p == nums[0] for p in prediction):
            return True
        g = str(gold).strip().lower()
        if any(isinstance(p, str) and g and (g in p) for p in prediction):
            return True
    return False


def mmmu_score(predictions: dict[str, str], answers: dict[str, dict]) -> dict[str, float]:
    """Reads the official {id: response} predictions and the answer dict; accuracy overall and per subject."""
    per_subject: dict[str, list[bool]] = defaultdict(list)
    for qid, gold in answers.items():
        response = predictions.get(qid, "")
        if gold["question_type"] == "multiple-choice":
            parsed = mmmu_parse_choice(response, gold["all_choices"], gold["index2ans"], seed=qid)
        else:
            parsed = mmmu_parse_open(response)
        subject = "_".join(qid.split("_")[1:-1]) or "all"
        per_subject[subject].append(mmmu_correct(parsed, gold["answer"], gold["question_type"]))
    total = [x for v in per_subject.values() for x in v]
    return {
        "accuracy": 100 * sum(total) / len(total),
        **{k: 100 * sum(v) / len(v) for k, v in sorted(per_subject.items())},
    }


# ----- pair / group benchmarks -------------------------------------------------------------------------
def mmvp_pair_accuracy(correct_in_order: list[bool]) -> float:
    """MMVP: questions come in pairs (1-2, 3-4, ...); a pair counts only when both are right."""
    if len(correct_in_order) % 2:
        raise ValueError("MMVP needs an even number of questions (pairs)")
    pairs = [correct_in_order[i] and correct_in_order[i + 1] for i in range(0, len(correct_in_order), 2)]
    return 100 * sum(pairs) / len(pairs)


def cvbench_scores(rows: Iterable[tuple[str, bool]]) -> dict[str, float]:
    """CV-Bench: rows of (source, correct). 2D = mean of ADE20K and COCO accuracy, 3D = Omni3D accuracy,
    overall = mean of 2D and 3D."""
    acc: dict[str, list[bool]] = defaultdict(list)
    for source, ok in rows:
        acc[source].append(ok)
    a = {k: 100 * sum(v) / len(v) for k, v in acc.items()}
    two_d = (a["ADE20K"] + a["COCO"]) / 2
    three_d = a["Omni3D"]
    return {**a, "2D": two_d, "3D": three_d, "overall": (two_d + three_d) / 2}


def ocrbench_score(rows: Iterable[dict]) -> dict[str, int]:
    """OCRBench: a prediction is right when one of the answers appears in it (case-insensitive; spaces
    and newlines ignored for handwritten math). Scores are counts (out of 1000 for the full set)."""
    per_type: dict[str, int] = defaultdict(int)
    for row in rows:
        pred = row["prediction"].strip().lower()
        answers = row["answers"] if isinstance(row["answers"], list) else [row["answers"]]
        if row.get("type") == "Handwritten Mathematical Expression Recognition":
            pred = re.sub(r"\s+", "", pred)
            hit = any(re.sub(r"\s+", "", a.strip().lower()) in pred for a in answers)
        else:
            hit = any(a.strip().lower() in pred for a in answers)
        per_type[row.get("type", "all")] += int(hit)
    return {**dict(sorted(per_type.items())), "total": sum(per_type.values())}


# ----- exports ------------------------------------------------------------------------------------------
def export_vizwiz(answers: list[dict], image_of: dict[Any, str]) -> list[dict[str, str]]:
    """The VizWiz VQA evaluation server's file: [{"image": "VizWiz_test_00000000.jpg", "answer": ...}]."""
    return [{"image": image_of[a["question_id"]], "answer": a["text"]} for a in answers]


def export_mmvet(answers: list[dict]) -> dict[str, str]:
    """MM-Vet's judge input: {"v1_0": answer, ...}."""
    return {str(a["question_id"]): a["text"] for a in answers}


def export_llava_bench(answers: list[dict], model_id: str) -> list[dict]:
    """LLaVA-Bench's GPT-review input: answer JSONL rows with answer_id, model_id and metadata."""
    return [
        {
            "question_id": a["question_id"],
            "prompt": a.get("prompt", ""),
            "text": a["text"],
            "answer_id": f"{model_id}-{a['question_id']}",
            "model_id": model_id,
            "metadata": {},
        }
        for a in answers
    ]


def export_mmbench_tsv(answers: list[dict], questions: dict[Any, dict]) -> str:
    """MMBench submission rows (index, question, options A-D, prediction) as TSV for the official
    evaluator (which takes the same columns as .xlsx)."""
    lines = ["index\tquestion\tA\tB\tC\tD\tprediction"]
    for a in answers:
        q = questions[a["question_id"]]
        opts = q.get("options", {})
        opts = opts if isinstance(opts, dict) else dict(zip("ABCD", opts, strict=False))
        cells = [str(a["question_id"]), q["text"], *(opts.get(k, "") for k in "ABCD"), a["text"]]
        lines.append("\t".join(c.replace("\t", " ").replace("\n", " ") for c in cells))
    return "\n".join(lines) + "\n"


# ----- tables -------------------------------------------------------------------------------------------
def results_table(results: dict[str, float], reference: str | None = None) -> str:
    """Markdown table of benchmark -> score, with the paper's number and the difference when known."""
    paper = PAPER_RESULTS.get(reference, {}) if reference else {}
    head = "| benchmark | score |" + (" paper | diff |" if reference else "")
    sep = "|---|---|" + ("---|---|" if reference else "")
    rows = [head, sep]
    for bench, score in sorted(results.items()):
        row = f"| {bench} | {score:.1f} |"
        if reference:
            ref = paper.get(bench)
            row += f" {ref:.1f} | {score - ref:+.1f} |" if ref is not None else " - | - |"
        rows.append(row)
    return "\n".join(rows) + "\n"
