"""``fusion eval``: ``run`` (answer a benchmark), ``score`` (a benchmark's official rules), ``table``
(results across benchmarks) and ``compare`` (against the paper's numbers)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _cli_error(err: Exception) -> Exception:
    from ..cli import CliError

    return CliError(str(err))


def _run(args: argparse.Namespace) -> int:
    from .files import EvalInputError
    from .runner import RunSettings, parse_shard, run_eval, shard_from_env

    try:
        shard = parse_shard(args.shard) if args.shard is not None else shard_from_env()
        settings = RunSettings(
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            num_beams=args.num_beams,
            seed=args.seed,
            query_len=args.query_len,
            kind=args.kind,
            lang=args.lang,
            circular=args.circular,
            limit=args.limit,
            dtype=args.dtype,
            device=args.device,
            shard=shard,
        )
        if args.images is not None and not Path(args.images).is_dir():
            raise EvalInputError(f"no image folder at {args.images}")
        outcome = run_eval(args.model, args.questions, args.images, args.out, settings)
    except (EvalInputError, ValueError) as err:
        raise _cli_error(err) from err
    index, count = settings.shard
    done = f"answered {outcome.answered}, {outcome.skipped} already done"
    if outcome.merged:
        print(f"[fusion eval] shard {index}/{count}: {done}; all answers in {outcome.out}", file=sys.stderr)
    else:
        waiting = ", ".join(map(str, outcome.waiting_for))
        print(f"[fusion eval] shard {index}/{count}: {done}; waiting for shard(s) {waiting} to merge", file=sys.stderr)
    return 0


def _run_record(answers: Path | None) -> dict[str, Any] | None:
    from .files import read_json
    from .runner import record_path

    if answers is None or not record_path(answers).is_file():
        return None
    record = read_json(record_path(answers))
    keys = ("model", "model_id", "config_sha256", "query_len", "dtype", "decoding", "prompt", "completed")
    return {k: record.get(k) for k in keys}


def _score(args: argparse.Namespace) -> int:
    from .benchmarks import BENCHMARKS
    from .files import EvalInputError, write_json

    bench = BENCHMARKS[args.bench]
    try:
        for name in (
            "answers",
            "annotations",
            "annotation_dir",
            "mme_root",
            "results_dir",
            "questions",
            "answer_dict",
            "predictions",
            "splits",
        ):
            paths = getattr(args, name, None)
            for p in paths if isinstance(paths, list) else [paths]:
                if p is not None and not Path(p).exists():
                    raise EvalInputError(f"--{name.replace('_', '-')}: {p} does not exist")
        outcome = bench.score(args)
        outcome["answers"] = None if args.answers is None else str(args.answers)
        model = _run_record(args.answers)
        if model is not None:
            outcome["model"] = model
        if args.out is not None:
            write_json(args.out, outcome)
    except EvalInputError as err:
        raise _cli_error(err) from err
    print(json.dumps(outcome, indent=2, ensure_ascii=False))
    for note in outcome["notes"]:
        print(f"[fusion eval] {note}", file=sys.stderr)
    return 0


def _pairs(items: list[str] | None) -> dict[str, float]:
    from .files import EvalInputError

    out = {}
    for item in items or []:
        col, sep, value = item.partition("=")
        try:
            out[col.strip()] = float(value)
        except ValueError:
            raise EvalInputError(f"--set expects COLUMN=NUMBER, got {item!r}") from None
        if not sep:
            raise EvalInputError(f"--set expects COLUMN=NUMBER, got {item!r}")
    return out


def _table(args: argparse.Namespace) -> int:
    from .files import EvalInputError, write_atomic, write_json
    from .tables import build_table, table_markdown

    try:
        table = build_table(args.results, _pairs(args.set), args.model)
        markdown = table_markdown(table)
        if args.md is not None:
            write_atomic(args.md, markdown)
        if args.json is not None:
            write_json(args.json, table)
    except EvalInputError as err:
        raise _cli_error(err) from err
    print(markdown, end="")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .files import EvalInputError, write_atomic, write_json
    from .tables import build_table, compare, compare_markdown

    try:
        comparison = compare(build_table(args.results, _pairs(args.set), args.model), args.paper, args.model)
        markdown = compare_markdown(comparison)
        if args.md is not None:
            write_atomic(args.md, markdown)
        if args.json is not None:
            write_json(args.json, comparison)
    except EvalInputError as err:
        raise _cli_error(err) from err
    print(markdown, end="")
    if args.max_diff is not None:
        off = [r for r in comparison["rows"] if r["diff"] is not None and abs(r["diff"]) > args.max_diff]
        if off:
            names = ", ".join(f"{r['benchmark']} ({r['diff']:+.1f})" for r in off)
            print(f"[fusion eval] off by more than {args.max_diff}: {names}", file=sys.stderr)
            return 1
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    from .prompts import KINDS

    run = sub.add_parser(
        "run",
        help="answer a question file (greedy, batched, resumable, sharded)",
        description="Answers a LLaVA-format question JSONL (or an MMBench TSV). Sharded with --shard i/n or "
        "under torchrun / accelerate launch; the last shard merges. Re-running skips answered questions.",
    )
    run.add_argument("--model", required=True, help="FUSION checkpoint folder")
    run.add_argument("--questions", required=True, type=Path, help="question JSONL / JSON / MMBench TSV")
    run.add_argument("--images", default=None, type=Path, help="folder the questions' image paths are relative to")
    run.add_argument("--out", required=True, type=Path, help="answers JSONL (run record: <out>.run.json)")
    run.add_argument("--batch-size", type=int, default=8)
    run.add_argument("--max-new-tokens", type=int, default=128)
    run.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    run.add_argument("--top-p", type=float, default=None)
    run.add_argument("--num-beams", type=int, default=1)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--query-len", type=int, default=None, help="latent tokens per question (default: the config's)")
    run.add_argument(
        "--kind",
        choices=KINDS,
        default="auto",
        help="prompt for questions without a 'kind': short (single word or phrase), mc (options + letter), "
        "vizwiz, open (as is); auto = mc when a question has options",
    )
    run.add_argument("--lang", choices=("en", "cn"), default="en", help="cn: MMBench-CN's multiple-choice instruction")
    run.add_argument(
        "--circular", action="store_true", help="ask every option rotation (MMBench's circular evaluation)"
    )
    run.add_argument("--limit", type=int, default=None, help="only the first N questions")
    run.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    run.add_argument("--device", default=None, help="default: cuda:<LOCAL_RANK> when available, else cpu")
    run.add_argument("--shard", default=None, help="i/n (default: RANK/WORLD_SIZE from torchrun, else 0/1)")
    run.set_defaults(func=_run)


def _add_score(sub: argparse._SubParsersAction) -> None:
    from .benchmarks import BENCHMARKS

    score = sub.add_parser("score", help="score answers with a benchmark's official rules")
    benches = score.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for bench in BENCHMARKS.values():
        p = benches.add_parser(bench.name, help=bench.help, description=bench.help)
        p.add_argument(
            "--answers",
            type=Path,
            required=bench.needs_answers,
            default=None,
            help="answers JSONL (from `fusion eval run` or LLaVA's scripts)",
        )
        bench.arguments(p)
        p.add_argument("--allow-missing", action="store_true", help="score the answered questions of a partial run")
        p.add_argument("--out", type=Path, default=None, help="save the result JSON (input of `fusion eval table`)")
        p.set_defaults(func=_score)


def _add_tables(sub: argparse._SubParsersAction) -> None:
    for name, help in (
        ("table", "results across benchmarks (Markdown, JSON)"),
        ("compare", "our results against the paper's numbers for a released checkpoint"),
    ):
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument(
            "results", nargs="+", type=Path, help="result JSON files of `score --out`, folders of them, or a table JSON"
        )
        p.add_argument("--set", action="append", metavar="COLUMN=VALUE", help="add a cell by hand (e.g. MM-Vet=58.1)")
        p.add_argument("--model", default=None, help="row name (or the row to compare)")
        p.add_argument("--md", type=Path, default=None, help="also write the Markdown here")
        p.add_argument("--json", type=Path, default=None, help="also write the JSON here")
        if name == "compare":
            p.add_argument("--paper", required=True, help="released checkpoint, e.g. fusion-x-3b or FUSION-X-Phi3.5-3B")
            p.add_argument("--max-diff", type=float, default=None, help="exit 1 when a benchmark differs by more")
            p.set_defaults(func=_compare)
        else:
            p.set_defaults(func=_table)


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    ev = subparsers.add_parser("eval", help="benchmarks: run, score, table, compare")
    sub = ev.add_subparsers(dest="eval_command", required=True)
    _add_run(sub)
    _add_score(sub)
    _add_tables(sub)
