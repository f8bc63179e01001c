"""The prompts of the paper's evaluation (LLaVA's conventions, which FUSION's scripts follow).

- short answer (MME, POPE, TextVQA, ChartQA, DocVQA, ...): question + ``\\n`` + SHORT_ANSWER;
- multiple choice (MMBench, SEED, ScienceQA, AI2D, MMStar, CV-Bench, MMVP, MMMU): question, then one
  line per option ``A. <option>``, then MULTIPLE_CHOICE (MMBench-CN: MULTIPLE_CHOICE_CN);
- VizWiz: the unanswerable instruction before the short-answer line;
- open (MM-Vet, LLaVA-Bench, RealWorldQA whose questions carry their own instruction): as is.

The whole formatted text is also the question that guides FUSION's vision encoder, as in the
reference scripts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SHORT_ANSWER = "Answer the question using a single word or phrase."
MULTIPLE_CHOICE = "Answer with the option's letter from the given choices directly."
MULTIPLE_CHOICE_CN = "请直接回答选项字母。"
VIZWIZ_UNANSWERABLE = "When the provided information is insufficient, respond with 'Unanswerable'."
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
KINDS = ("auto", "short", "mc", "open", "vizwiz")


def options_of(record: Mapping[str, Any]) -> dict[str, str]:
    """A record's options as ``{letter: text}`` (from a list, a dict, or MMBench-style ``A``/``B``
    columns; a column list stops at the first empty cell, as LLaVA's MMBench reader does)."""
    options = record.get("options")
    if options is None:
        options = record.get("choices")
    if isinstance(options, Mapping):
        return {str(k).strip(): str(v) for k, v in options.items() if v is not None}
    if isinstance(options, Sequence) and not isinstance(options, str):
        return {LETTERS[i]: str(v) for i, v in enumerate(options)}
    found = {}
    for letter in LETTERS:
        value = record.get(letter)
        if value is None or (isinstance(value, str) and not value.strip()):
            break
        found[letter] = str(value)
    return found


def format_question(record: Mapping[str, Any], default_kind: str = "auto", lang: str = "en") -> str:
    """The text sent to the model for one question record.

    ``kind`` (the record's, else ``default_kind``): ``short`` | ``mc`` | ``open`` | ``vizwiz`` |
    ``auto`` (multiple choice when the record has options, else as is). A suffix already present
    in the text is not added twice, so LLaVA's question files (suffix included) format unchanged.
    """
    kind = record.get("kind") or default_kind
    if kind not in KINDS:
        raise ValueError(f"unknown question kind {kind!r} (expected one of {', '.join(KINDS)})")
    text = str(record["text"]).strip()
    options = options_of(record)
    if options and not all(f"\n{k}. " in f"\n{text}" for k in options):
        text += "\n" + "\n".join(f"{k}. {str(v).strip()}" for k, v in options.items())
    if kind == "auto":
        kind = "mc" if options else "open"
    if kind == "mc":
        suffix = MULTIPLE_CHOICE_CN if (record.get("lang") or lang) == "cn" else MULTIPLE_CHOICE
        text = _append(text, suffix)
    elif kind == "short":
        text = _append(text, SHORT_ANSWER)
    elif kind == "vizwiz":
        text = _append(_append(text, VIZWIZ_UNANSWERABLE), SHORT_ANSWER)
    return text


def _append(text: str, line: str) -> str:
    return text if line in text else f"{text}\n{line}"


def rotate_options(options: Mapping[str, str], k: int) -> dict[str, str]:
    """The options shifted by ``k``, letters kept in place (MMBench's circular evaluation): with
    A=x, B=y, C=z, rotation 1 is A=y, B=z, C=x."""
    values = list(options.values())
    letters = list(options)
    k %= max(len(values), 1)
    return dict(zip(letters, values[k:] + values[:k], strict=True))


def rotated_answer(options: Mapping[str, str], answer: str, k: int) -> str:
    """The letter of ``answer``'s option after :func:`rotate_options` by ``k``."""
    letters = list(options)
    return letters[(letters.index(answer) - k) % len(letters)]
