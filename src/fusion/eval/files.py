"""Reading and writing the files of an evaluation: JSON / JSONL / TSV / CSV with line-exact errors,
atomic writes, and the answer files the runner (or LLaVA's scripts) produce."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class EvalInputError(ValueError):
    """A question, answer or annotation file (or an image) is unusable; the message names the file and line."""


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Objects of a JSONL file; a bad line raises with its number. Blank lines are skipped."""
    path = Path(path)
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise EvalInputError(f"{path}:{n}: not valid JSON ({err.msg})") from err
                if not isinstance(row, dict):
                    raise EvalInputError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
                rows.append(row)
    except OSError as err:
        raise EvalInputError(f"cannot read {path}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise EvalInputError(f"{path}: not UTF-8 text ({err.reason})") from err
    return rows


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise EvalInputError(f"cannot read {path}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise EvalInputError(f"{path}: not UTF-8 text ({err.reason})") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise EvalInputError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from err


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a ``.jsonl`` file, a ``.json`` list (or ``{"data": [...]}``), or a ``.tsv`` / ``.csv`` table."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".csv"):
        return read_table(path)
    if suffix == ".json":
        data = read_json(path)
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise EvalInputError(f"{path}: expected a JSON list of objects")
        return data
    return read_jsonl(path)


def read_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a TSV (MMBench / VLMEvalKit layout, base64 images allowed) or CSV file, as dicts of
    strings; empty cells and pandas' ``nan`` become ``None``."""
    path = Path(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # base64 images are long cells
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            try:
                header = next(reader)
            except StopIteration:
                raise EvalInputError(f"{path}: empty table") from None
            rows = []
            for cells in reader:
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    raise EvalInputError(
                        f"{path}:{reader.line_num}: {len(cells)} cells but the header has {len(header)}"
                    )
                rows.append({k: (None if _is_missing(v) else v) for k, v in zip(header, cells, strict=True)})
    except OSError as err:
        raise EvalInputError(f"cannot read {path}: {err.strerror or err}") from err
    except (UnicodeDecodeError, csv.Error) as err:
        raise EvalInputError(f"{path}: unreadable table ({err})") from err
    return rows


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in ("", "nan", "none")


def write_atomic(path: str | os.PathLike, text: str | bytes) -> Path:
    """Writes through a temporary file and a rename, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = text.encode("utf-8") if isinstance(text, str) else text
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> Path:
    return write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_answers(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Answer rows (``question_id`` and ``text``, as the runner and LLaVA's scripts write them)."""
    rows = read_jsonl(path)
    for n, row in enumerate(rows, 1):
        if "question_id" not in row or "text" not in row:
            raise EvalInputError(f"{path}: answer {n} needs question_id and text")
        if not isinstance(row["text"], str):
            raise EvalInputError(f"{path}: answer {n} ({row['question_id']!r}) has a non-string text")
    return rows


def id_key(value: Any) -> str:
    """Question ids compared across files: ``12``, ``"12"`` and ``12.0`` (pandas) are the same id."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()
