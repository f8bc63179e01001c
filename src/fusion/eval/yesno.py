"""Yes/no benchmarks: POPE and MME, with their official answer readings.

POPE (its ``evaluate.py``): only the first sentence counts (text up to the first ``.``); commas are
removed and the text split on spaces; the answer is "no" when a word is ``No``, ``no`` or ``not``,
and "yes" otherwise (so an answer that says neither counts as yes). "yes" is the positive class:
accuracy, precision, recall, F1 and the yes-ratio, per split (random / popular / adversarial).

MME (its ``eval_tool/calculation.py``): the answer, lower-cased, is "yes"/"no" when it is exactly
that, else "yes" if its first four characters contain "yes", "no" if they contain "no", else
"other" (always wrong). Per subtask: acc = right questions / questions, acc+ = images with both
questions right / images, score = 100 * (acc + acc+). Perception is the sum over its 10 subtasks,
cognition over its 4.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .common import join, missing_note, pct, result
from .files import EvalInputError, id_key, read_jsonl, read_records, write_atomic
from .prompts import SHORT_ANSWER

MME_PERCEPTION = (
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
)
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
POPE_SPLITS = ("adversarial", "popular", "random")


# ----- POPE ------------------------------------------------------------------------------------------
def pope_answer(text: str) -> str:
    """POPE's reading of a free-text answer: "yes" or "no"."""
    first = text.split(".")[0] if "." in text else text
    words = first.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def pope_metrics(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Metrics in percent; ``predictions`` are free-text answers, ``labels`` "yes"/"no"."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} answers for {len(labels)} labels")
    tp = fp = tn = fn = 0
    for text, label in zip(predictions, labels, strict=True):
        label = str(label).strip().lower()
        if label not in ("yes", "no"):
            raise EvalInputError(f"POPE label {label!r} is neither yes nor no")
        pred_yes, true_yes = pope_answer(text) == "yes", label == "yes"
        tp += pred_yes and true_yes
        fp += pred_yes and not true_yes
        tn += (not pred_yes) and (not true_yes)
        fn += (not pred_yes) and true_yes
    total = tp + fp + tn + fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": pct(tp + tn, total),
        "precision": 100 * precision,
        "recall": 100 * recall,
        "f1": 100 * f1,
        "yes_ratio": pct(tp + fp, total),
        "n": total,
    }


def score_pope(
    answers: list[dict[str, Any]],
    annotations: Path | None = None,
    annotation_dir: Path | None = None,
    categories: dict[str, str] | None = None,
    allow_missing: bool = False,
) -> dict[str, Any]:
    """POPE per split. Annotations: JSONL ``{question_id, label (or answer), category}``, or POPE's
    own folder of ``coco_pope_<split>.json`` label files, matched in order with the answers of that
    split (as the official and LLaVA scripts do; the split comes from the answer's ``category`` or
    from the question file)."""
    by_split: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    missing: list[str] = []
    if annotation_dir is not None:
        files = sorted(Path(annotation_dir).glob("*pope_*.json"))
        if not files:
            raise EvalInputError(f"{annotation_dir}: no POPE label files (coco_pope_<split>.json)")
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for a in answers:
            split = a.get("category") or (categories or {}).get(id_key(a["question_id"]))
            if split is None:
                raise EvalInputError(
                    f"answer {a['question_id']!r} has no POPE split; give the question file (--questions)"
                )
            grouped[split].append(a)
        for path in files:
            split = path.stem.split("pope_", 1)[1]
            labels = [r["label"] for r in read_jsonl(path)]
            got = grouped.pop(split, [])
            if len(got) != len(labels):
                raise EvalInputError(f"{path.name}: {len(labels)} labels but {len(got)} answers in split {split!r}")
            by_split[split] = ([a["text"] for a in got], labels)
        if grouped:
            raise EvalInputError(f"answers of splits {sorted(grouped)} have no label file in {annotation_dir}")
    elif annotations is not None:
        truth = {id_key(r["question_id"]): r for r in read_records(annotations)}
        pairs, missing = join(answers, truth, allow_missing)
        for a, t in pairs:
            label = t.get("label", t.get("answer"))
            if label is None:
                raise EvalInputError(f"annotation {t['question_id']!r} has no label")
            texts, labels = by_split[t.get("category") or a.get("category") or "all"]
            texts.append(a["text"])
            labels.append(label)
    else:
        raise EvalInputError("POPE needs --annotations (JSONL) or --annotation-dir (POPE's label files)")
    splits = {s: pope_metrics(*by_split[s]) for s in sorted(by_split)}
    all_texts = [t for s in sorted(by_split) for t in by_split[s][0]]
    all_labels = [label for s in sorted(by_split) for label in by_split[s][1]]
    metrics: dict[str, Any] = {"splits": splits, "all": pope_metrics(all_texts, all_labels)}
    for key in ("accuracy", "precision", "recall", "f1", "yes_ratio"):
        metrics[f"mean_{key}"] = sum(m[key] for m in splits.values()) / len(splits)
    notes = [*missing_note(missing, len(all_texts) + len(missing))]
    notes.append("headline POPE = F1 averaged over the splits (LLaVA-1.5's convention); pooled metrics under 'all'")
    return result("pope", {"POPE": metrics["mean_f1"]}, metrics, len(all_texts), len(missing), notes)


# ----- MME -------------------------------------------------------------------------------------------
def mme_answer(text: str) -> str:
    """MME's reading: "yes", "no" or "other" (not trimmed: the tool reads the answer as written)."""
    text = text.lower()
    if text in ("yes", "no"):
        return text
    prefix = text[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


def _norm_question(text: str) -> str:
    return " ".join(text.replace(SHORT_ANSWER, " ").split())


def mme_scores(rows: Iterable[tuple[str, str, str, str]]) -> dict[str, Any]:
    """Rows ``(category, image, prediction, answer)``; each image must have its two questions."""
    groups: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for category, image, prediction, answer in rows:
        answer = answer.strip().lower()
        if answer not in ("yes", "no"):
            raise EvalInputError(f"MME answer {answer!r} ({category}/{image}) is neither yes nor no")
        groups[category][image].append(mme_answer(prediction) == answer)
    subtasks = {}
    for category, images in sorted(groups.items()):
        odd = [img for img, r in images.items() if len(r) != 2]
        if odd:
            raise EvalInputError(f"MME {category}: image {odd[0]!r} has {len(images[odd[0]])} questions, not 2")
        results = [x for r in images.values() for x in r]
        acc = pct(sum(results), len(results))
        acc_plus = pct(sum(all(r) for r in images.values()), len(images))
        subtasks[category] = {"acc": acc, "acc_plus": acc_plus, "score": acc + acc_plus, "images": len(images)}
    unknown = sorted(set(subtasks) - set(MME_PERCEPTION) - set(MME_COGNITION))
    if unknown:
        raise EvalInputError(f"unknown MME subtasks {unknown} (expected {MME_PERCEPTION + MME_COGNITION})")
    perception = [c for c in MME_PERCEPTION if c in subtasks]
    cognition = [c for c in MME_COGNITION if c in subtasks]
    return {
        "subtasks": subtasks,
        "perception": sum(subtasks[c]["score"] for c in perception),
        "cognition": sum(subtasks[c]["score"] for c in cognition),
        "perception_subtasks": len(perception),
        "cognition_subtasks": len(cognition),
    }


def read_mme_root(root: Path) -> dict[tuple[str, str, str], tuple[str, str]]:
    """MME's release folder -> {(subtask, image stem, question): (image file, answer)}. Subtasks keep
    their pairs either in ``questions_answers_YN/<stem>.txt`` (images in ``images/``) or beside the
    image; each line is ``question<TAB>answer``."""
    if not root.is_dir():
        raise EvalInputError(f"no MME folder at {root}")
    truth = {}
    for cat in sorted(p for p in root.iterdir() if p.is_dir()):
        qa = cat / "questions_answers_YN" if (cat / "questions_answers_YN").is_dir() else cat
        image_dir = cat / "images" if (cat / "images").is_dir() else cat
        for txt in sorted(qa.glob("*.txt")):
            images = [p.name for p in image_dir.glob(f"{txt.stem}.*") if p.suffix.lower() != ".txt"]
            for n, line in enumerate(txt.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                parts = line.split("\t")
                if len(parts) != 2:
                    raise EvalInputError(f"{txt}:{n}: expected question<TAB>answer")
                image = images[0] if images else txt.stem
                truth[(cat.name, txt.stem, _norm_question(parts[0]))] = (image, parts[1].strip())
    if not truth:
        raise EvalInputError(f"{root}: no MME question files found")
    return truth


def _mme_key(answer: dict[str, Any]) -> tuple[str, str, str]:
    qid = str(answer["question_id"])
    category = answer.get("category") or qid.split("/")[0]
    image = Path(str(answer.get("image") or qid)).stem
    return category, image, _norm_question(answer.get("prompt", ""))


def score_mme(
    answers: list[dict[str, Any]] | None = None,
    annotations: Path | None = None,
    mme_root: Path | None = None,
    results_dir: Path | None = None,
    export_dir: Path | None = None,
    allow_missing: bool = False,
) -> dict[str, Any]:
    """MME from answers + annotations (JSONL ``{question_id, category, image, answer}`` or MME's release
    folder), or from a folder in the official tool's input format (``<subtask>.txt`` with
    ``image<TAB>question<TAB>truth<TAB>prediction`` lines). ``export_dir`` writes that format."""
    rows: list[tuple[str, str, str, str, str]] = []  # category, image, question, prediction, truth
    missing: list[Any] = []
    if results_dir is not None:
        files = sorted(Path(results_dir).glob("*.txt"))
        if not files:
            raise EvalInputError(f"{results_dir}: no <subtask>.txt files")
        for path in files:
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                parts = line.split("\t")
                if len(parts) != 4:
                    raise EvalInputError(f"{path}:{n}: expected image<TAB>question<TAB>truth<TAB>prediction")
                rows.append((path.stem, parts[0], parts[1], parts[3], parts[2]))
    elif answers is not None and mme_root is not None:
        truth = read_mme_root(Path(mme_root))
        seen = set()
        for a in answers:
            key = _mme_key(a)
            if key not in truth:
                raise EvalInputError(f"answer {a['question_id']!r} ({key[2][:60]!r}) is not a question of {mme_root}")
            if key in seen:
                raise EvalInputError(f"two answers to MME question {key}")
            seen.add(key)
            image, gt = truth[key]
            rows.append((key[0], image, key[2], a["text"], gt))
        missing = [k for k in truth if k not in seen]
    elif answers is not None and annotations is not None:
        table = {id_key(r["question_id"]): r for r in read_records(annotations)}
        pairs, missing = join(answers, table, allow_missing)
        for a, t in pairs:
            rows.append(
                (t["category"], str(t["image"]), t.get("question", a.get("prompt", "")), a["text"], t["answer"])
            )
    else:
        raise EvalInputError("MME needs --answers with --annotations or --mme-root, or --results-dir")
    if missing and not allow_missing:
        raise EvalInputError(f"{len(missing)} MME questions have no answer; pass --allow-missing to score the rest")
    scores = mme_scores((c, img, pred, gt) for c, img, _, pred, gt in rows)
    if export_dir is not None:
        by_cat: dict[str, list[str]] = defaultdict(list)
        for c, img, q, pred, gt in rows:
            by_cat[c].append("\t".join(x.replace("\t", " ").replace("\n", " ") for x in (img, q, gt, pred)))
        for c, lines in by_cat.items():
            write_atomic(Path(export_dir) / f"{c}.txt", "\n".join(lines) + "\n")
    notes = missing_note(missing, len(rows) + len(missing))
    headline = {}
    if scores["perception_subtasks"]:
        headline["MME_P"] = scores["perception"]
        if scores["perception_subtasks"] < len(MME_PERCEPTION):
            notes.append(f"MME_P sums {scores['perception_subtasks']} of {len(MME_PERCEPTION)} perception subtasks")
    if scores["cognition_subtasks"]:
        headline["MME_C"] = scores["cognition"]
        if scores["cognition_subtasks"] < len(MME_COGNITION):
            notes.append(f"MME_C sums {scores['cognition_subtasks']} of {len(MME_COGNITION)} cognition subtasks")
    return result("mme", headline, scores, len(rows), len(missing), notes)


def categories_from_questions(questions_file: Path) -> dict[str, str]:
    from .questions import read_questions

    return {id_key(q["question_id"]): str(q["category"]) for q in read_questions(questions_file) if q.get("category")}
