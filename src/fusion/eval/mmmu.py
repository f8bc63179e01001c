"""MMMU: the benchmark's own answer parsing and scoring, and its file formats.

Files: the official prediction file ``{"validation_Art_1": "B", ...}`` (multiple-choice predictions
already parsed to a letter, open ones as text) and answer dict ``{"validation_Art_1":
{"question_type": "multiple-choice", "ground_truth": "B"}, ...}``. Runner answers (free text) are
parsed first, with the options from the question file, into that prediction file.

Multiple choice (``parse_choice``): ``,.!?;:'`` stripped from both ends, the text padded with spaces;
candidates are "The final answer is:\\n<X>", else "(X)", else " X "; if none and the text has more than
5 words, options whose text occurs in it; the last-occurring candidate wins; with none at all a
choice is drawn at random (seeded by the question id here, so scores are reproducible).

Open (``parse_open``): the text lower-cased and split at newlines; in each part, the shortest tail
after "could be / so / is / thus / therefore / final / answer / result" (and "=" in the last part)
is a key answer; numbers are extracted from the keys; everything is normalized (numbers to floats
rounded to 2 decimals, strings lower-cased, one-letter strings padded). An open answer is right when a
normalized gold string occurs in a string prediction or a gold number equals a number prediction.

Accuracy is per subject, per discipline and overall, over the predictions given.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .common import pct, result
from .files import EvalInputError, id_key, read_json, write_json
from .prompts import options_of

DISCIPLINES = {
    "Art and Design": ["Art", "Art_Theory", "Design", "Music"],
    "Business": ["Accounting", "Economics", "Finance", "Manage", "Marketing"],
    "Science": ["Biology", "Chemistry", "Geography", "Math", "Physics"],
    "Health and Medicine": [
        "Basic_Medical_Science",
        "Clinical_Medicine",
        "Diagnostics_and_Laboratory_Medicine",
        "Pharmacy",
        "Public_Health",
    ],
    "Humanities and Social Science": ["History", "Literature", "Sociology", "Psychology"],
    "Tech and Engineering": [
        "Agriculture",
        "Architecture_and_Engineering",
        "Computer_Science",
        "Electronics",
        "Energy_and_Power",
        "Materials",
        "Mechanical_Engineering",
    ],
}
_NUMBER_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUMBER_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUMBER_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")
_KEY_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")


def parse_choice(response: str, all_choices: list[str], index2ans: Mapping[str, str], seed: str = "") -> str:
    """The letter MMMU reads from a multiple-choice response."""
    for char in (",", ".", "!", "?", ";", ":", "'"):
        response = response.strip(char)
    response = f" {response} "
    candidates: list[str] = []
    by_text = bracketed = False
    for c in all_choices:
        if f"The final answer is:\n{c}" in response:
            candidates.append(c)
            bracketed = True
    if not candidates:
        for c in all_choices:
            if f"({c})" in response:
                candidates.append(c)
                bracketed = True
    if not candidates:
        candidates = [c for c in all_choices if f" {c} " in response]
    if not candidates and len(response.split()) > 5:
        candidates = [k for k, v in index2ans.items() if str(v).lower() in response.lower()]
        by_text = bool(candidates)
    if not candidates:
        return random.Random(f"mmmu:{seed}").choice(all_choices)
    if len(candidates) == 1:
        return candidates[0]
    if by_text:
        positions = [response.lower().rfind(str(index2ans[c]).lower()) for c in candidates]
    elif bracketed:
        positions = [response.rfind(f"({c})") for c in candidates]
    else:
        positions = [response.rfind(f" {c} ") for c in candidates]
    return candidates[positions.index(max(positions))]


def extract_numbers(text: str) -> list[str]:
    return _NUMBER_COMMAS.findall(text) + _NUMBER_SCIENTIFIC.findall(text) + _NUMBER_SIMPLE.findall(text)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def normalize(text: str) -> list[float | str]:
    text = text.strip()
    if _is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def _key_responses(response: str) -> list[str]:
    response = response.strip().strip(".").lower()
    # MMMU splits on ". <Capital>" too, but after lower-casing that never matches: only newlines split.
    parts = re.split(r"\.\s(?=[A-Z])|\n", response)
    keys = []
    for i, part in enumerate(parts):
        indicators = [*_KEY_INDICATORS, "="] if i == len(parts) - 1 else list(_KEY_INDICATORS)
        shortest = None
        for ind in indicators:
            if ind in part:
                tail = part.split(ind)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in (":", ",", ".", "!", "?", ";", "'"):
            keys.append(shortest)
    return keys or [response]


def parse_open(response: str) -> list[float | str]:
    """The normalized candidate answers MMMU reads from an open response."""
    keys = _key_responses(response)
    candidates: list[str] = list(keys)
    for k in keys:
        candidates.extend(extract_numbers(k))
    out: list[float | str] = []
    for c in candidates:
        for value in normalize(c):
            if value not in out:
                out.append(value)
    return out


def correct(question_type: str, gold: Any, parsed: Any) -> bool:
    if question_type == "multiple-choice":
        golds = gold if isinstance(gold, list) else [gold]
        return parsed in golds
    norm: list[float | str] = []
    for g in gold if isinstance(gold, list) else [gold]:
        norm.extend(normalize(str(g)))
    for p in parsed:
        if isinstance(p, str):
            if any(isinstance(g, str) and g in p for g in norm):
                return True
        elif p in norm:
            return True
    return False


def subject_of(question_id: str) -> str:
    """``validation_Art_Theory_12`` -> ``Art_Theory``."""
    return "_".join(question_id.split("_")[1:-1])


def score_mmmu(predictions: Mapping[str, Any], answer_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Scores official-format predictions against the answer dict (as MMMU's ``main_eval_only``)."""
    per_subject: dict[str, list[bool]] = defaultdict(list)
    for qid, pred in predictions.items():
        if qid not in answer_dict:
            raise EvalInputError(f"prediction {qid!r} is not in the answer dict")
        gold = answer_dict[qid]
        if not isinstance(gold, dict) or "question_type" not in gold or "ground_truth" not in gold:
            raise EvalInputError(f"answer-dict entry {qid!r} needs question_type and ground_truth")
        if gold["question_type"] == "multiple-choice":
            parsed = pred
        else:
            parsed = parse_open(pred if isinstance(pred, str) else str(pred))
        per_subject[subject_of(qid)].append(correct(gold["question_type"], gold["ground_truth"], parsed))
    if not per_subject:
        raise EvalInputError("no MMMU predictions")
    subjects = {s: {"accuracy": pct(sum(v), len(v)), "n": len(v)} for s, v in sorted(per_subject.items())}
    disciplines = {}
    for name, members in DISCIPLINES.items():
        got = [x for m in members for x in per_subject.get(m, [])]
        if got:
            disciplines[name] = {"accuracy": pct(sum(got), len(got)), "n": len(got)}
    every = [x for v in per_subject.values() for x in v]
    overall = pct(sum(every), len(every))
    missing = [k for k in answer_dict if k not in predictions]
    notes = (
        [f"{len(missing)} questions of the answer dict have no prediction (MMMU scores the predictions given)"]
        if missing
        else []
    )
    metrics = {"accuracy": overall, "disciplines": disciplines, "subjects": subjects}
    return result("mmmu", {"MMMU": overall}, metrics, len(every), len(missing), notes)


def predictions_from_answers(answers: list[dict[str, Any]], questions: list[dict[str, Any]]) -> dict[str, str]:
    """Runner answers -> the official prediction file: multiple-choice responses parsed to a letter
    with the question's options (the questions need ``question_type`` or options), open ones as given."""
    by_id = {id_key(q["question_id"]): q for q in questions}
    out = {}
    for a in answers:
        qid = id_key(a["question_id"])
        q = by_id.get(qid)
        if q is None:
            raise EvalInputError(f"answer {qid!r} is not in the question file")
        options = options_of(q)
        qtype = q.get("question_type") or ("multiple-choice" if options else "open")
        if qtype == "multiple-choice":
            if not options:
                raise EvalInputError(f"MMMU question {qid!r} is multiple-choice but lists no options")
            out[qid] = parse_choice(a["text"], list(options), options, seed=qid)
        else:
            out[qid] = a["text"]
    return out


def score_mmmu_files(
    answer_dict: Path,
    predictions: Path | None = None,
    answers: list[dict[str, Any]] | None = None,
    questions: list[dict[str, Any]] | None = None,
    export: Path | None = None,
) -> dict[str, Any]:
    if predictions is not None:
        preds = read_json(predictions)
        if not isinstance(preds, dict):
            raise EvalInputError(f"{predictions}: expected MMMU's {{id: prediction}} object")
    elif answers is not None and questions is not None:
        preds = predictions_from_answers(answers, questions)
    else:
        raise EvalInputError("MMMU needs --predictions, or --answers with --questions (for the options)")
    if export is not None:
        write_json(export, preds)
    gold = read_json(answer_dict)
    if not isinstance(gold, dict):
        raise EvalInputError(f"{answer_dict}: expected MMMU's answer dict")
    return score_mmmu(preds, gold)
