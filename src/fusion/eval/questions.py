"""Question files for ``fusion eval run``: LLaVA-format JSONL (``question_id``, ``image``, ``text``,
optional ``category`` / ``options`` / ``kind``), a JSON list of the same records, or an MMBench /
VLMEvalKit TSV (``index``, ``question``, ``hint``, ``A``..., base64 ``image``)."""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any

from .files import EvalInputError, read_json, read_jsonl, read_table
from .prompts import LETTERS, options_of, rotate_options

CIRCULAR_STRIDE = 1_000_000  # MMBench numbers the rotated copies of question i as i + k * 1e6


def read_questions(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Question records in file order. Ids may repeat (LLaVA's MME file names both questions of an
    image by the image); the runner keys answers by position, so that is allowed."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return _from_tsv(path)
    if suffix == ".json":
        data = read_json(path)
        if not isinstance(data, list):
            raise EvalInputError(f"{path}: expected a JSON list of question objects")
        records, where = data, "item"
    else:
        records, where = read_jsonl(path), "record"
    for n, q in enumerate(records, 1):
        if not isinstance(q, dict) or "question_id" not in q or "text" not in q:
            raise EvalInputError(f"{path}: {where} {n} needs question_id and text")
        if not isinstance(q["text"], str):
            raise EvalInputError(f"{path}: {where} {n} has a non-string text")
    if not records:
        raise EvalInputError(f"{path}: no questions")
    return records


def _from_tsv(path: Path) -> list[dict[str, Any]]:
    rows = read_table(path)
    if not rows:
        raise EvalInputError(f"{path}: no questions")
    for col in ("index", "question"):
        if col not in rows[0]:
            raise EvalInputError(f"{path}: an MMBench-style TSV needs an {col!r} column")
    by_index = {r["index"]: r for r in rows}
    out = []
    for n, row in enumerate(rows, 2):
        if row["index"] is None or row["question"] is None:
            raise EvalInputError(f"{path}:{n}: empty index or question")
        text = row["question"].strip()
        if row.get("hint"):
            text = f"{row['hint'].strip()}\n{text}"
        record: dict[str, Any] = {
            "question_id": int(row["index"]) if row["index"].strip().isdigit() else row["index"],
            "text": text,
            "options": options_of(row),
            "kind": "mc" if options_of(row) else "auto",
        }
        for key in ("category", "l2-category", "split"):
            if row.get(key) is not None:
                record[key] = row[key]
        image = row.get("image")
        if image is not None:
            if len(image) <= 64 and image in by_index and by_index[image].get("image"):
                image = by_index[image]["image"]  # VLMEvalKit stores repeated images as the index of the first
            record["image_base64"] = image
        elif row.get("image_path"):
            record["image"] = row["image_path"]
        out.append(record)
    return out


def decode_image_base64(question: dict[str, Any]) -> bytes:
    try:
        return base64.b64decode(question["image_base64"], validate=True)
    except (binascii.Error, ValueError) as err:
        raise EvalInputError(f"question {question['question_id']!r}: its base64 image does not decode ({err})") from err


def expand_circular(questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """MMBench's circular evaluation for a question file without rotated copies: every question
    with N >= 2 options becomes N questions with the options rotated (``rotate_options``). Copy k
    of question ``i`` is ``i + k * 1e6`` for integer ids (MMBench's numbering) and ``"i#k"``
    otherwise; each carries ``circular_group`` (the original id) and ``circular_index`` (k)."""
    for q in questions:
        qid = q["question_id"]
        if "circular_index" in q or (isinstance(qid, int) and qid >= CIRCULAR_STRIDE):
            raise EvalInputError(
                f"question {qid!r} is already a rotated copy (the file holds MMBench's circular copies); "
                "run it without --circular"
            )
    out = []
    for q in questions:
        options = options_of(q)
        if len(options) < 2:
            out.append(q)
            continue
        if len(options) > len(LETTERS):
            raise EvalInputError(f"question {q['question_id']!r} has more options than letters")
        for k in range(len(options)):
            copy = {key: v for key, v in q.items() if key not in ("options", "choices", *LETTERS)}
            qid = q["question_id"]
            copy["question_id"] = (
                qid if k == 0 else (qid + k * CIRCULAR_STRIDE if isinstance(qid, int) else f"{qid}#{k}")
            )
            copy["options"] = rotate_options(options, k)
            copy["circular_group"] = qid
            copy["circular_index"] = k
            out.append(copy)
    return out
