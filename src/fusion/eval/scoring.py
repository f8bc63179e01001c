"""Scoring rules of common benchmarks, written from their documented definitions.

- VQA accuracy (VQAv2 / TextVQA / VizWiz): answers normalized (lower case, punctuation, number
  words to digits, articles and contractions), then min(1, matches / 3) averaged over the 10
  leave-one-out subsets of the human answers.
- POPE: yes/no extracted from free text; accuracy, precision, recall, F1 and yes-ratio.
- MME: per subtask accuracy (per question) and accuracy+ (per image, both questions right);
  score = 100 * (acc + acc+); perception and cognition are sums of their subtasks.
- Multiple choice: the option letter is read from free text (a letter, "(B)", "B.", or the option's
  own text); MMBench circular evaluation counts a question only if every rotation is right.
- ANLS (DocVQA): 1 - normalized Levenshtein distance, 0 when above 0.5, best over the answers.
- Relaxed accuracy (ChartQA): numbers within 5% of the target, else exact (case-insensitive) match.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

_NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_CONTRACTIONS = {
    "arent": "aren't",
    "cant": "can't",
    "couldnt": "couldn't",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hes": "he's",
    "im": "i'm",
    "isnt": "isn't",
    "itd": "it'd",
    "itll": "it'll",
    "ive": "i've",
    "lets": "let's",
    "shouldnt": "shouldn't",
    "thats": "that's",
    "theres": "there's",
    "theyre": "they're",
    "theyve": "they've",
    "wasnt": "wasn't",
    "werent": "weren't",
    "whats": "what's",
    "wheres": "where's",
    "whos": "who's",
    "wont": "won't",
    "wouldnt": "wouldn't",
    "youre": "you're",
    "youve": "you've",
}
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_PERIOD = re.compile(r"(?<!\d)(\.)(?!\d)")
_COMMA_NUMBER = re.compile(r"(\d)(,)(\d)")


def normalize_vqa_answer(answer: str) -> str:
    text = answer.replace("\n", " ").replace("\t", " ").strip().lower()
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_NUMBER.search(text):
            text = text.replace(p, "")
        else:
            text = text.replace(p, " ")
    text = _PERIOD.sub("", text)
    words = []
    for word in text.split():
        word = _NUMBER_WORDS.get(word, word)
        if word in _ARTICLES:
            continue
        words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def vqa_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """VQA accuracy of one prediction against (usually 10) human answers."""
    pred = normalize_vqa_answer(prediction)
    gts = [normalize_vqa_answer(a) for a in human_answers]
    if not gts:
        raise ValueError("no human answers")
    scores = []
    for i in range(len(gts)):
        others = gts[:i] + gts[i + 1 :]
        scores.append(min(1.0, sum(g == pred for g in others) / 3))
    return sum(scores) / len(scores)


def yes_no(text: str) -> str | None:
    """ "yes" / "no" from a free-text answer (the first of the two that appears), else None."""
    words = re.findall(r"[a-z]+", text.lower())
    for w in words:
        if w in ("yes", "no"):
            return w
    return None


def pope_metrics(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """POPE: "yes" is the positive class; an answer with neither word counts as "no"."""
    tp = fp = tn = fn = 0
    for pred, label in zip(predictions, labels, strict=True):
        p = yes_no(pred) == "yes"
        y = label.strip().lower() == "yes"
        tp += p and y
        fp += p and not y
        tn += (not p) and (not y)
        fn += (not p) and y
    total = tp + fp + tn + fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / total,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": (tp + fp) / total,
    }


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


def mme_scores(rows: Iterable[dict]) -> dict[str, float]:
    """Rows: {category, image, prediction, answer ("Yes"/"No")}. Returns per-subtask scores and the
    perception / cognition totals."""
    per_image: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for row in rows:
        correct = yes_no(row["prediction"]) == row["answer"].strip().lower()
        per_image[(row["category"], row["image"])].append(correct)
    subtasks: dict[str, dict[str, list]] = defaultdict(lambda: {"q": [], "img": []})
    for (category, _), results in per_image.items():
        subtasks[category]["q"].extend(results)
        subtasks[category]["img"].append(all(results))
    scores = {}
    for category, r in subtasks.items():
        acc = sum(r["q"]) / len(r["q"])
        acc_plus = sum(r["img"]) / len(r["img"])
        scores[category] = 100 * (acc + acc_plus)
    scores["perception"] = sum(v for k, v in scores.items() if k in MME_PERCEPTION)
    scores["cognition"] = sum(v for k, v in scores.items() if k in MME_COGNITION)
    return scores


def extract_choice(text: str, options: dict[str, str]) -> str | None:
    """The chosen letter: a bare letter, "(B)", "B.", "B)", "Answer: B", or the option's text."""
    stripped = text.strip()
    letters = "".join(options)
    m = re.match(rf"^\(?([{letters}])[\).:,]?(\s|$)", stripped)
    if m:
        return m.group(1)
    m = re.search(rf"(?:answer|option)\s*(?:is)?\s*:?\s*\(?([{letters}])\b", stripped, re.IGNORECASE)
    if m:
        return m.group(1).upper()
    lowered = stripped.lower().rstrip(".")
    matches = [k for k, v in options.items() if v and str(v).strip().lower().rstrip(".") in lowered]
    if len(matches) == 1:
        return matches[0]
    return None


def circular_accuracy(groups: dict[str, list[bool]]) -> float:
    """MMBench CircularEval: a question counts only if it is right under every option rotation."""
    if not groups:
        return 0.0
    return sum(all(v) for v in groups.values()) / len(groups)


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def anls(prediction: str, answers: Sequence[str], threshold: float = 0.5) -> float:
    pred = " ".join(prediction.strip().lower().split())
    best = 0.0
    for answer in answers:
        gt = " ".join(answer.strip().lower().split())
        length = max(len(pred), len(gt))
        dist = _levenshtein(pred, gt) / length if length else 0.0
        best = max(best, 1 - dist if dist < threshold else 0.0)
    return best


def _number(text: str) -> float | None:
    cleaned = text.strip().rstrip("%").replace(",", "").replace("$", "")
    try:
        return float(cleaned)
    except ValueError:
        return None


def relaxed_accuracy(prediction: str, target: str, tolerance: float = 0.05) -> float:
    pred, gt = _number(prediction), _number(target)
    if pred is not None and gt is not None:
        if gt == 0:
            return float(pred == 0)
        return float(abs(pred - gt) / abs(gt) <= tolerance)
    return float(prediction.strip().lower() == target.strip().lower())
