"""Prompt suffixes of the paper's evaluation, per benchmark kind."""

from __future__ import annotations

SHORT_ANSWER = "Answer the question using a single word or phrase."
MULTIPLE_CHOICE = "Answer with the option's letter from the given choices directly."
LETTERS = "ABCDEFGHIJ"


def format_question(record: dict) -> str:
    """The text sent to the model: `text` plus the options (``A. ...``) and the kind's suffix.

    A record may carry ``options`` (a list or a {letter: text} dict) and ``kind``
    (``short`` | ``mc`` | ``open``); without ``kind``, options mean multiple choice.
    """
    text = str(record["text"]).strip()
    options = record.get("options")
    kind = record.get("kind") or ("mc" if options else "open")
    if options:
        items = options.items() if isinstance(options, dict) else zip(LETTERS, options, strict=False)
        text += "\n" + "\n".join(f"{letter}. {str(value).strip()}" for letter, value in items)
    if kind == "mc" and MULTIPLE_CHOICE not in text:
        text += "\n" + MULTIPLE_CHOICE
    elif kind == "short" and SHORT_ANSWER not in text:
        text += "\n" + SHORT_ANSWER
    return text
