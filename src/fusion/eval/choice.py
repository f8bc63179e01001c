"""Reading the chosen option out of a free-text answer, by two published rules.

``infer_choice`` is MMBench's rule (OpenCompass / VLMEvalKit, also MMStar's official evaluator):

1. *option letter*: ``. ( ) [ ] , : ; ! * # { }`` become spaces and the answer is split into words;
   if exactly one option letter appears as a word it is the choice (so the article in "A dog is ..."
   reads as option A: VLMEvalKit's check for that only runs with its VERBOSE switch). A known
   refusal ("Cannot determine the answer", ...) or a lone ``Z`` is "Z" (no option);
2. *option text*: otherwise, if exactly one option's text occurs in the answer (case-insensitive),
   that option;
3. otherwise nothing - the official pipeline would then ask a GPT judge; here the answer counts as wrong.

``llava_choice`` is the rule of LLaVA's / FUSION's ScienceQA, CV-Bench and MMVP scripts: the answer
itself when it is a letter A-F, else the first ``X.``, ``X,``, ``X`` + newline or ``(X)`` with X in
A-F, else nothing (option text is not read).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_SEPARATORS = str.maketrans({c: " " for c in ".()[],:;!*#{}"})
_LLAVA = re.compile(r"([A-F])\.|([A-F]),|([A-F])\n|\(([A-F])\)")
NO_OPTION = "Z"


def infer_option(answer: str, letters: Iterable[str]) -> str | None:
    """Step 1 of MMBench's rule: the single option letter written as a word, ``"Z"`` for a refusal."""
    if any(r in answer for r in REFUSALS):
        return NO_OPTION
    words = answer.translate(_SEPARATORS).split()
    hits = [c for c in letters if c in words]
    if len(hits) == 1:
        return hits[0]
    if not hits and NO_OPTION in words:
        return NO_OPTION
    return None


def infer_text(answer: str, options: Mapping[str, str]) -> str | None:
    """Step 2 of MMBench's rule: the single option whose text occurs in the answer."""
    low = answer.lower()
    hits = [k for k, v in options.items() if str(v).lower() in low]
    return hits[0] if len(hits) == 1 else None


def infer_choice(answer: str, options: Mapping[str, str]) -> str | None:
    """MMBench's rule (letter, then option text); None when neither identifies one option."""
    return infer_option(answer, options) or infer_text(answer, options)


def llava_choice(answer: str, letters: Iterable[str] = "ABCDEF") -> str | None:
    """The rule of LLaVA's / FUSION's ScienceQA, CV-Bench and MMVP scripts."""
    if answer in set(letters):
        return answer
    found = _LLAVA.findall(answer)
    if found:
        return next(g for g in found[0] if g)
    return None


MATCHERS = ("mmbench", "llava")


def choose(answer: str, options: Mapping[str, str], matcher: str) -> str | None:
    if matcher == "mmbench":
        return infer_choice(answer, options)
    if matcher == "llava":
        return llava_choice(answer)
    raise ValueError(f"unknown matcher {matcher!r} (expected one of {', '.join(MATCHERS)})")


def letter_of(answer: str | int, options: Mapping[str, str]) -> str:
    """A ground-truth answer as a letter: ``"B"``, ``"(B)"``, ``"(b)"``, an index (``1`` or ``"1"``)
    or the option's own text."""
    letters = list(options)
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < len(letters):
            raise ValueError(f"answer index {answer} is out of range for {len(letters)} options")
        return letters[answer]
    text = str(answer).strip()
    bare = text.strip("()").strip().upper()
    if bare in letters:
        return bare
    if text.isdigit() and int(text) < len(letters):
        return letters[int(text)]
    matches = [k for k, v in options.items() if str(v).strip().lower() == text.lower()]
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"answer {answer!r} is neither an option letter, an index nor an option's text")
