"""Results tables across benchmarks (Markdown and JSON) and the comparison with the paper's numbers.

Inputs are the result files of ``fusion eval score --out`` (one per benchmark run), a folder of
them, or a table JSON written here. A row is a model (taken from the answers' run record); its
cells are the benchmarks' headline numbers, in the paper's column order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from .files import EvalInputError, read_json

EXTRA_COLUMNS = ("MMVP_question", "VQA", "Synth")  # ours, not in the paper's table


@cache
def paper_results() -> dict[str, Any]:
    return json.loads((Path(__file__).with_name("paper_results.json")).read_text(encoding="utf-8"))


def columns() -> list[str]:
    return [*paper_results()["columns"], *EXTRA_COLUMNS]


def paper_model(name: str) -> tuple[str, dict[str, float]]:
    """A released checkpoint's paper numbers, by name or alias (case-insensitive)."""
    models = paper_results()["models"]
    wanted = name.strip().lower()
    for key, entry in models.items():
        if wanted == key.lower() or wanted in (a.lower() for a in entry["aliases"]):
            return key, entry["scores"]
    known = ", ".join(f"{k} ({', '.join(v['aliases'])})" for k, v in models.items())
    raise EvalInputError(f"no paper numbers for {name!r}; known: {known}")


def _result_files(paths: Iterable[Path]) -> list[Path]:
    files = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(p.glob("*.json")))
        elif p.is_file():
            files.append(p)
        else:
            raise EvalInputError(f"no results at {p}")
    if not files:
        raise EvalInputError("no result files given")
    return files


def build_table(
    paths: Iterable[Path], extra: Mapping[str, float] | None = None, model: str | None = None
) -> dict[str, Any]:
    """``{"columns": [...], "rows": [{"model", "scores": {column: value}, "sources": {column: file}}]}``.

    Two results filling the same cell of one model are an error (which one would be meant?).
    ``extra`` adds cells by hand (e.g. MM-Vet's total from its GPT judge) to the row of ``model``.
    """
    rows: dict[str, dict[str, Any]] = {}
    known = set(columns())
    for path in _result_files(paths):
        data = read_json(path)
        if isinstance(data, dict) and "rows" in data and "columns" in data:
            for row in data["rows"]:
                for col, value in row["scores"].items():
                    _put(rows, row["model"], col, value, row.get("sources", {}).get(col, str(path)))
            continue
        if not isinstance(data, dict) or "headline" not in data:
            raise EvalInputError(f"{path}: not a result of `fusion eval score --out` or a table JSON")
        name = model or (data.get("model") or {}).get("model_id") or "model"
        for col, value in data["headline"].items():
            if col not in known:
                raise EvalInputError(f"{path}: unknown column {col!r}")
            _put(rows, name, col, value, str(path))
    for col, value in (extra or {}).items():
        if col not in known:
            raise EvalInputError(f"unknown column {col!r} (known: {', '.join(columns())})")
        name = model or (next(iter(rows)) if len(rows) == 1 else None)
        if name is None:
            raise EvalInputError("--set needs --model when the table has several models (or none)")
        _put(rows, name, col, value, "set by hand")
    return {
        "columns": [c for c in columns() if any(c in r["scores"] for r in rows.values())],
        "rows": list(rows.values()),
    }


def _put(rows: dict[str, dict[str, Any]], model: str, col: str, value: float, source: str) -> None:
    row = rows.setdefault(model, {"model": model, "scores": {}, "sources": {}})
    if col in row["scores"]:
        raise EvalInputError(f"{model}: {col} given twice ({row['sources'][col]} and {source})")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise EvalInputError(f"{model}: {col} is not a number ({value!r})")
    row["scores"][col] = float(value)
    row["sources"][col] = source


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}"


def table_markdown(table: Mapping[str, Any]) -> str:
    cols = table["columns"]
    lines = ["| model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for row in table["rows"]:
        lines.append(f"| {row['model']} | " + " | ".join(_fmt(row["scores"].get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def compare(table: Mapping[str, Any], paper: str, model: str | None = None) -> dict[str, Any]:
    """Our numbers against a released checkpoint's paper numbers, benchmark by benchmark."""
    name, reference = paper_model(paper)
    rows = table["rows"]
    if model is not None:
        rows = [r for r in rows if r["model"] == model]
        if not rows:
            raise EvalInputError(f"no row for model {model!r} (have: {', '.join(r['model'] for r in table['rows'])})")
    if len(rows) != 1:
        raise EvalInputError(f"the results hold {len(rows)} models; choose one with --model")
    ours = rows[0]["scores"]
    data = paper_results()
    out = []
    for col in data["columns"]:
        ours_col = data["compare_with"].get(col, col)
        value, ref = ours.get(ours_col), reference.get(col)
        entry: dict[str, Any] = {"benchmark": col, "ours": value, "paper": ref, "compared_with": ours_col}
        entry["diff"] = None if value is None or ref is None else round(value - ref, 4)
        entry["note"] = data["notes"].get(col, "")
        out.append(entry)
    return {"model": rows[0]["model"], "paper_model": name, "source": data["source"], "rows": out}


def compare_markdown(comparison: Mapping[str, Any]) -> str:
    lines = [
        f"{comparison['model']} vs the paper's {comparison['paper_model']}",
        "",
        "| benchmark | ours | paper | diff | note |",
        "|---|---:|---:|---:|---|",
    ]
    for r in comparison["rows"]:
        diff = "-" if r["diff"] is None else f"{r['diff']:+.1f}"
        label = r["benchmark"] if r["compared_with"] == r["benchmark"] else f"{r['benchmark']} ({r['compared_with']})"
        lines.append(f"| {label} | {_fmt(r['ours'])} | {_fmt(r['paper'])} | {diff} | {r['note']} |")
    return "\n".join(lines) + "\n"
