"""What every scorer shares: the result layout and the join of answers with annotations."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .files import EvalInputError, id_key


def result(
    benchmark: str,
    headline: Mapping[str, float],
    metrics: Mapping[str, Any],
    n: int,
    missing: int = 0,
    notes: Iterable[str] = (),
) -> dict[str, Any]:
    """A scorer's output. ``headline`` holds the table columns this benchmark fills (percentages, or
    MME points); ``metrics`` everything else."""
    return {
        "benchmark": benchmark,
        "headline": {k: round(float(v), 4) for k, v in headline.items()},
        "metrics": dict(metrics),
        "n": n,
        "missing": missing,
        "notes": list(notes),
    }


def pct(hits: float, total: int) -> float:
    """``100 * hits / total``; an empty group is an error, not 0%."""
    if total == 0:
        raise EvalInputError("nothing to score")
    return 100.0 * hits / total


def join(
    answers: list[dict[str, Any]],
    truth: Mapping[str, dict[str, Any]],
    allow_missing: bool,
    answer_key: Callable[[dict[str, Any]], str] = lambda a: id_key(a["question_id"]),
    what: str = "question",
) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], list[str]]:
    """Pairs each answer with its annotation (``truth`` keyed like ``answer_key``).

    An answer without annotation, or two answers to one question, is an error (the wrong files were
    given). Annotated questions without an answer are an error unless ``allow_missing``; they are
    then returned so the result can report them.
    """
    pairs, seen = [], set()
    for a in answers:
        key = answer_key(a)
        if key not in truth:
            raise EvalInputError(f"the answer to {what} {key!r} has no annotation (are these the right files?)")
        if key in seen:
            raise EvalInputError(f"two answers to {what} {key!r}")
        seen.add(key)
        pairs.append((a, truth[key]))
    missing = [k for k in truth if k not in seen]
    if missing and not allow_missing:
        raise EvalInputError(
            f"{len(missing)} of {len(truth)} {what}s have no answer (first: {missing[0]!r}); "
            "finish the run, or pass --allow-missing to score the answered ones"
        )
    return pairs, missing


def missing_note(missing: list[str], total: int) -> list[str]:
    return [f"{len(missing)} of {total} questions were not answered and are left out"] if missing else []
