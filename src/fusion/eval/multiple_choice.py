"""Multiple-choice benchmarks: MMBench (EN/CN, circular), SEED-Bench image, ScienceQA-IMG, AI2D,
MMStar, RealWorldQA, CV-Bench and MMVP.

The chosen option is read with MMBench's rule (``choice.infer_choice``: letter, then option text) or
with the rule of LLaVA's / FUSION's scripts (``choice.llava_choice``); each benchmark defaults to the
rule its published numbers were made with (see ``DEFAULT_MATCHER``). Answers that no rule can read
count as wrong and are reported as ``unmatched`` (MMBench's own pipeline would hand them to a GPT judge).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .choice import choose, infer_option, letter_of
from .common import join, missing_note, pct, result
from .files import EvalInputError, id_key, read_json, read_records, write_jsonl
from .prompts import options_of, rotate_options, rotated_answer
from .questions import CIRCULAR_STRIDE
from .xlsx import write_xlsx

DEFAULT_MATCHER = {
    "mmbench": "mmbench",
    "mmbench_cn": "mmbench",
    "seed": "mmbench",
    "ai2d": "mmbench",
    "mmstar": "mmbench",
    "realworldqa": "mmbench",
    "scienceqa": "llava",  # FUSION's eval_science_qa.py
    "cvbench": "llava",  # FUSION's eval_cvbench_qa.py
    "mmvp": "llava",  # FUSION's eval_mmvp_qa.py
}


def _judge(answer: str, options: dict[str, str], truth: str, matcher: str) -> tuple[bool, str | None]:
    chosen = choose(answer, options, matcher)
    return chosen == truth, chosen


def _truth(record: dict[str, Any], options: dict[str, str], where: str) -> str:
    if record.get("answer") is None:
        raise EvalInputError(f"{where}: no answer in the annotation")
    try:
        return letter_of(record["answer"], options)
    except ValueError as err:
        raise EvalInputError(f"{where}: {err}") from err


def _by_category(items: list[tuple[str | None, bool]]) -> dict[str, float]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for cat, ok in items:
        if cat is not None:
            groups[cat].append(ok)
    return {k: pct(sum(v), len(v)) for k, v in sorted(groups.items())}


# ----- MMBench -----------------------------------------------------------------------------------------
def _group_of(answer: dict[str, Any]) -> str:
    if answer.get("circular_group") is not None:
        return id_key(answer["circular_group"])
    key = id_key(answer["question_id"])
    return str(int(key) % CIRCULAR_STRIDE) if key.isdigit() else key


def score_mmbench(
    answers: list[dict[str, Any]],
    annotations: Path,
    lang: str = "en",
    matcher: str = "mmbench",
    allow_missing: bool = False,
    export: Path | None = None,
) -> dict[str, Any]:
    """MMBench dev (answers known) with circular evaluation: a question counts only when every rotation
    of its options is answered right. Rotations are MMBench's own copies (index + k * 1e6, in its TSV
    files) or the runner's ``--circular`` copies. Test-split files (no answers) can only be exported."""
    records = read_records(annotations)
    table = {id_key(r.get("index", r.get("question_id"))): r for r in records}
    bench = "mmbench_cn" if lang == "cn" else "mmbench"
    if export is not None:
        export_mmbench(answers, records, export, allow_missing)
    if not records or all(r.get("answer") is None for r in records):
        return result(
            bench,
            {},
            {"exported": str(export) if export else None},
            len(answers),
            0,
            ["no answers in this split: exported only"],
        )
    seen: set[str] = set()
    groups: dict[str, list[bool]] = defaultdict(list)
    vanilla, unmatched, cats, l2 = [], 0, {}, {}
    for a in answers:
        qid = id_key(a["question_id"])
        if qid in table:
            rec, k = table[qid], 0
        elif a.get("circular_group") is not None and id_key(a["circular_group"]) in table:
            rec, k = table[id_key(a["circular_group"])], int(a.get("circular_index", 0))
        else:
            raise EvalInputError(f"the answer to question {qid!r} has no row in {annotations}")
        if qid in seen:
            raise EvalInputError(f"two answers to question {qid!r}")
        seen.add(qid)
        options = options_of(rec)
        truth = _truth(rec, options, f"{annotations} question {qid!r}")
        if k:
            truth = rotated_answer(options, truth, k)
            options = rotate_options(options, k)
        ok, chosen = _judge(a["text"], options, truth, matcher)
        unmatched += chosen is None
        group = _group_of(a)
        groups[group].append(ok)
        first = a.get("circular_index", 0) == 0 and (not qid.isdigit() or int(qid) < CIRCULAR_STRIDE)
        if first:
            vanilla.append(ok)
            cats[group] = rec.get("category")
            l2[group] = rec.get("l2-category", rec.get("l2_category"))
    covered = seen | {id_key(a["circular_group"]) for a in answers if a.get("circular_group") is not None}
    missing = [k for k in table if k not in covered]
    if missing and not allow_missing:
        raise EvalInputError(
            f"{len(missing)} of {len(table)} MMBench rows have no answer (first: {missing[0]!r}); "
            "pass --allow-missing to score the rest"
        )
    circular = any(len(v) > 1 for v in groups.values())
    group_ok = {g: all(v) for g, v in groups.items()}
    metrics: dict[str, Any] = {
        "circular_accuracy": pct(sum(group_ok.values()), len(group_ok)),
        "vanilla_accuracy": pct(sum(vanilla), len(vanilla)) if vanilla else None,
        "questions": len(group_ok),
        "unmatched": unmatched,
        "per_category": _by_category([(cats.get(g), ok) for g, ok in group_ok.items()]),
        "per_l2_category": _by_category([(l2.get(g), ok) for g, ok in group_ok.items()]),
    }
    notes = missing_note(missing, len(table))
    if not circular:
        notes.append("no question has more than one rotation: this is single-pass accuracy, not the circular score")
    if unmatched:
        notes.append(f"{unmatched} answers name no option (MMBench's pipeline would ask a GPT judge; counted wrong)")
    column = "MMB_CN" if lang == "cn" else "MMB_EN"
    return result(bench, {column: metrics["circular_accuracy"]}, metrics, len(answers), len(missing), notes)


def export_mmbench(
    answers: list[dict[str, Any]], records: list[dict[str, Any]], path: Path, allow_missing: bool
) -> Path:
    """MMBench's submission sheet, laid out as LLaVA's converter writes it: the TSV's columns without
    hint / category / source / image / comment / l2-category, ``prediction`` after ``D``."""
    by_id = {id_key(a["question_id"]): a["text"] for a in answers}
    dropped = {"hint", "category", "source", "image", "comment", "l2-category", "image_path"}
    columns = [c for c in records[0] if c not in dropped]
    insert_at = columns.index("D") + 1 if "D" in columns else len(columns)
    header = [*columns[:insert_at], "prediction", *columns[insert_at:]]
    rows = []
    for rec in records:
        key = id_key(rec.get("index", rec.get("question_id")))
        if key not in by_id and not allow_missing:
            raise EvalInputError(f"question {key!r} has no answer; the submission needs every row (or --allow-missing)")
        values = [_cell(rec.get(c)) for c in columns]
        rows.append([*values[:insert_at], by_id.get(key), *values[insert_at:]])
    return write_xlsx(path, header, rows)


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value.strip()) < 16:
        return int(value)
    return value


# ----- single-pass benchmarks --------------------------------------------------------------------------
def _score_simple(
    bench: str,
    column: str,
    answers: list[dict[str, Any]],
    truth: dict[str, dict[str, Any]],
    matcher: str,
    allow_missing: bool,
    category_of: Callable[[dict[str, Any]], str | None] = lambda r: r.get("category"),
) -> tuple[dict[str, Any], list[tuple[dict[str, Any], dict[str, Any], bool]]]:
    pairs, missing = join(answers, truth, allow_missing)
    judged, unmatched = [], 0
    for a, rec in pairs:
        options = options_of(rec)
        where = f"{bench} question {a['question_id']!r}"
        if not options:
            raise EvalInputError(f"{where}: no options in the annotation")
        ok, chosen = _judge(a["text"], options, _truth(rec, options, where), matcher)
        unmatched += chosen is None
        judged.append((a, rec, ok))
    acc = pct(sum(ok for *_, ok in judged), len(judged))
    metrics = {
        "accuracy": acc,
        "unmatched": unmatched,
        "per_category": _by_category([(category_of(rec), ok) for _, rec, ok in judged]),
        "matcher": matcher,
    }
    notes = missing_note(missing, len(truth))
    if unmatched:
        notes.append(f"{unmatched} answers name no option and count as wrong")
    return result(bench, {column: acc}, metrics, len(judged), len(missing), notes), judged


def _keyed(records: list[dict[str, Any]], *id_fields: str) -> dict[str, dict[str, Any]]:
    for f in id_fields:
        if records and f in records[0]:
            return {id_key(r[f]): r for r in records}
    raise EvalInputError(f"annotation records need one of the id fields {id_fields}")


def score_seed(
    answers: list[dict[str, Any]],
    annotations: Path,
    matcher: str = "mmbench",
    allow_missing: bool = False,
    export: Path | None = None,
) -> dict[str, Any]:
    """SEED-Bench, image questions (``data_type == "image"``; dimensions 1-9). Reads ``SEED-Bench.json``
    (``choice_a`` ... ``choice_d``, ``question_type_id``) or JSONL with options."""
    data = read_json(annotations) if annotations.suffix == ".json" else None
    if isinstance(data, dict) and "questions" in data:
        names = {v: k for k, v in data.get("question_type", {}).items()}
        records = []
        for q in data["questions"]:
            if q.get("data_type", "image") != "image":
                continue
            rec = dict(q)
            rec["options"] = {k.upper(): q[f"choice_{k}"] for k in "abcd" if q.get(f"choice_{k}") is not None}
            rec["category"] = names.get(q.get("question_type_id"), q.get("question_type_id"))
            records.append(rec)
    else:
        records = [r for r in read_records(annotations) if r.get("data_type", "image") == "image"]
    out, _ = _score_simple("seed", "SEED-Image", answers, _keyed(records, "question_id"), matcher, allow_missing)
    if export is not None:
        write_jsonl(export, ({"question_id": a["question_id"], "prediction": a["text"]} for a in answers))
    return out


def score_scienceqa(
    answers: list[dict[str, Any]],
    annotations: Path,
    splits: Path | None = None,
    split: str = "test",
    matcher: str = "llava",
    allow_missing: bool = False,
) -> dict[str, Any]:
    """ScienceQA-IMG: the split's questions that have an image. Reads ScienceQA's ``problems.json``
    (``choices``, ``answer`` index, ``image``, ``split``; ``pid_splits.json`` optional) or JSONL."""
    data = read_json(annotations) if annotations.suffix == ".json" else None
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "choices" in v for v in data.values()):
        wanted = None
        if splits is not None:
            table = read_json(splits)
            if split not in table:
                raise EvalInputError(f"{splits}: no split {split!r}")
            wanted = {str(p) for p in table[split]}
        records = []
        for pid, p in data.items():
            if (wanted is not None and pid not in wanted) or (wanted is None and p.get("split", split) != split):
                continue
            if not p.get("image"):
                continue
            records.append({**p, "question_id": pid, "options": p["choices"], "category": p.get("subject")})
    else:
        records = [r for r in read_records(annotations) if r.get("image", True)]
    out, _ = _score_simple("scienceqa", "SQA", answers, _keyed(records, "question_id"), matcher, allow_missing)
    return out


def score_ai2d(
    answers: list[dict[str, Any]], annotations: Path, matcher: str = "mmbench", allow_missing: bool = False
) -> dict[str, Any]:
    """AI2D (test): options and an answer index or letter per question."""
    truth = _keyed(read_records(annotations), "question_id", "index", "id")
    return _score_simple("ai2d", "AI2D", answers, truth, matcher, allow_missing)[0]


def score_mmstar(
    answers: list[dict[str, Any]], annotations: Path, matcher: str = "mmbench", allow_missing: bool = False
) -> dict[str, Any]:
    """MMStar: accuracy overall, per core capability (``category``) and per ``l2_category``. Its TSV
    embeds the options in the question; without option columns only letters are read."""
    records = read_records(annotations)
    for r in records:
        if not options_of(r):
            # Letters only: empty texts occur in every answer, so the text step never picks one of them.
            r["options"] = dict.fromkeys("ABCD", "")
    truth = _keyed(records, "question_id", "index")
    out, judged = _score_simple("mmstar", "MMStar", answers, truth, matcher, allow_missing)
    out["metrics"]["per_l2_category"] = _by_category(
        [(rec.get("l2_category", rec.get("l2-category")), ok) for _, rec, ok in judged]
    )
    return out


def score_realworldqa(answers: list[dict[str, Any]], annotations: Path, allow_missing: bool = False) -> dict[str, Any]:
    """RealWorldQA: a letter answer (A-D) is read with MMBench's letter rule (plus option text when the
    annotation lists options); any other answer must match after lower-casing, trimming and dropping a
    final period (lmms-eval's rule)."""
    truth = _keyed(read_records(annotations), "question_id", "index", "id")
    pairs, missing = join(answers, truth, allow_missing)
    hits = []
    for a, rec in pairs:
        gt = str(rec["answer"]).strip()
        if gt.upper() in ("A", "B", "C", "D"):
            options = options_of(rec)
            chosen = choose(a["text"], options, "mmbench") if options else infer_option(a["text"], "ABCD")
            hits.append(chosen == gt.upper())
        else:
            hits.append(a["text"].lower().strip().rstrip(".") == gt.lower())
    acc = pct(sum(hits), len(hits))
    return result(
        "realworldqa", {"RWQA": acc}, {"accuracy": acc}, len(hits), len(missing), missing_note(missing, len(truth))
    )


def score_cvbench(
    answers: list[dict[str, Any]], annotations: Path, matcher: str = "llava", allow_missing: bool = False
) -> dict[str, Any]:
    """CV-Bench: accuracy per source; 2D = mean of ADE20K and COCO, 3D = Omni3D, overall = mean of 2D
    and 3D (the benchmark's published formula)."""
    records = read_records(annotations)
    truth = _keyed(records, "question_id", "idx")
    out, judged = _score_simple("cvbench", "CV-Bench", answers, truth, matcher, allow_missing, lambda r: r.get("task"))
    by_source: dict[str, list[bool]] = defaultdict(list)
    for _, rec, ok in judged:
        if not rec.get("source"):
            raise EvalInputError(f"CV-Bench question {rec.get('question_id', rec.get('idx'))!r} has no source")
        by_source[rec["source"]].append(ok)
    for needed in ("ADE20K", "COCO", "Omni3D"):
        if needed not in by_source:
            raise EvalInputError(f"CV-Bench: no scored question from {needed} (2D / 3D need all three sources)")
    src = {k: pct(sum(v), len(v)) for k, v in sorted(by_source.items())}
    two_d, three_d = (src["ADE20K"] + src["COCO"]) / 2, src["Omni3D"]
    out["metrics"].update(per_source=src, accuracy_2d=two_d, accuracy_3d=three_d, overall=(two_d + three_d) / 2)
    out["metrics"]["per_task"] = out["metrics"].pop("per_category")
    out["headline"] = {"CV-Bench": round((two_d + three_d) / 2, 4)}
    return out


def read_mmvp_csv(path: Path) -> list[dict[str, Any]]:
    """MMVP's ``Questions.csv`` (Index, Question, Options "(a) x (b) y", Correct Answer "(a)")."""
    import re

    records = []
    with open(path, encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
            try:
                parts = re.findall(r"\(([a-z])\)\s*(.*?)\s*(?=\([a-z]\)|$)", row["Options"].strip())
                records.append(
                    {
                        "question_id": int(row["Index"]),
                        "text": row["Question"],
                        "options": {k.upper(): v for k, v in parts},
                        "answer": row["Correct Answer"].strip().strip("()").upper(),
                    }
                )
            except (KeyError, ValueError, AttributeError) as err:
                raise EvalInputError(f"{path}:{n}: not an MMVP row ({err})") from err
    return records


def score_mmvp(
    answers: list[dict[str, Any]], annotations: Path, matcher: str = "llava", allow_missing: bool = False
) -> dict[str, Any]:
    """MMVP: questions come in pairs (1-2, 3-4, ... by index, same question on two images); a pair
    counts only when both are right. Also the per-question accuracy FUSION's script reports."""
    records = read_mmvp_csv(annotations) if annotations.suffix.lower() == ".csv" else read_records(annotations)
    truth = _keyed(records, "question_id", "Index")
    out, judged = _score_simple("mmvp", "MMVP", answers, truth, matcher, allow_missing)
    order = sorted(judged, key=lambda j: int(id_key(j[0]["question_id"])))
    ids = [int(id_key(a["question_id"])) for a, _, _ in order]
    pairs = []
    for i in range(0, len(order) - 1, 2):
        if ids[i] % 2 != 1 or ids[i + 1] != ids[i] + 1:
            raise EvalInputError(f"MMVP questions {ids[i]} and {ids[i + 1]} are not a pair (pairs are 1-2, 3-4, ...)")
        pairs.append(order[i][2] and order[i + 1][2])
    if len(order) % 2:
        raise EvalInputError(f"MMVP question {ids[-1]} has no pair partner among the answers")
    pair_acc = pct(sum(pairs), len(pairs))
    question_acc = out["metrics"]["accuracy"]
    out["metrics"].update(pair_accuracy=pair_acc, question_accuracy=question_acc, pairs=len(pairs))
    out["headline"] = {"MMVP": round(pair_acc, 4), "MMVP_question": round(question_acc, 4)}
    return out
