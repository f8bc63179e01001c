"""`fusion eval run` (answer a question file) and `fusion eval score` (score answers)."""

from __future__ import annotations

import argparse
import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any


def _shard(text: str | None) -> tuple[int, int]:
    if text is None:  # torchrun / accelerate launch set these
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or int(match.group(1)) >= int(match.group(2)):
        raise argparse.ArgumentTypeError(f"--shard must be i/n with 0 <= i < n, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _run(args: argparse.Namespace) -> int:
    from ..cli import CliError
    from .runner import EvalInputError, EvalSettings, run_eval

    if not (Path(args.model) / "config.json").is_file():
        raise CliError(f"no FUSION checkpoint at {args.model}")
    settings = EvalSettings(
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        query_len=args.query_len,
        shard=_shard(args.shard),
    )
    try:
        run_eval(args.model, args.questions, args.images, args.out, settings)
    except EvalInputError as err:
        raise CliError(str(err)) from err
    return 0


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from ..cli import CliError

    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise CliError(f"cannot read {path}: {err}") from err
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise CliError(f"{path}:{n}: not valid JSON ({err.msg})") from err
    return rows


def _options(t: dict) -> dict[str, str]:
    opts = t["options"]
    return opts if isinstance(opts, dict) else dict(zip("ABCDEFGHIJ", opts, strict=False))


def score_answers(bench: str, answers: list[dict], annotations: list[dict]) -> dict[str, Any]:
    """Joins answers and annotations on question_id and applies the benchmark's rule."""
    from . import benchmarks, scoring

    truth = {a["question_id"]: a for a in annotations}
    missing = [a["question_id"] for a in answers if a["question_id"] not in truth]
    if missing:
        raise ValueError(f"{len(missing)} answers have no annotation (first: {missing[0]!r})")
    pairs = [(a, truth[a["question_id"]]) for a in answers]
    if bench in ("vqa", "textvqa", "vizwiz"):
        accs = [scoring.vqa_accuracy(a["text"], t["answers"]) for a, t in pairs]
        return {"accuracy": 100 * sum(accs) / len(accs), "n": len(accs)}
    if bench == "pope":
        by_split: dict[str, list] = defaultdict(list)
        for a, t in pairs:
            by_split[t.get("category", "all")].append((a["text"], t["answer"]))
        return {split: scoring.pope_metrics([p for p, _ in v], [y for _, y in v]) for split, v in by_split.items()}
    if bench == "mme":
        return scoring.mme_scores(
            {"category": t["category"], "image": t["image"], "prediction": a["text"], "answer": t["answer"]}
            for a, t in pairs
        )
    if bench in ("mc", "mmbench", "seed", "scienceqa", "ai2d", "mmstar", "realworldqa"):
        groups: dict[str, list[bool]] = defaultdict(list)
        per_cat: dict[str, list[bool]] = defaultdict(list)
        for a, t in pairs:
            options = (
                t["options"] if isinstance(t["options"], dict) else dict(zip("ABCDEFGHIJ", t["options"], strict=False))
            )
            ok = scoring.extract_choice(a["text"], options) == t["answer"]
            groups[str(t.get("group", a["question_id"]))].append(ok)
            per_cat[t.get("category", "all")].append(ok)
        out = {
            "accuracy": 100 * sum(sum(v) for v in groups.values()) / sum(len(v) for v in groups.values()),
            "per_category": {k: 100 * sum(v) / len(v) for k, v in sorted(per_cat.items())},
        }
        if any(len(v) > 1 for v in groups.values()):
            out["circular_accuracy"] = 100 * scoring.circular_accuracy(groups)
        return out
    if bench == "mmvp":
        order = sorted(pairs, key=lambda p: p[1].get("index", p[0]["question_id"]))
        correct = [scoring.extract_choice(a["text"], _options(t)) == t["answer"] for a, t in order]
        return {"pair_accuracy": benchmarks.mmvp_pair_accuracy(correct)}
    if bench == "cvbench":
        return benchmarks.cvbench_scores(
            (t["source"], scoring.extract_choice(a["text"], _options(t)) == t["answer"]) for a, t in pairs
        )
    if bench == "ocrbench":
        return benchmarks.ocrbench_score(
            {"prediction": a["text"], "answers": t["answers"], "type": t.get("type")} for a, t in pairs
        )
    if bench == "docvqa":
        values = [scoring.anls(a["text"], t["answers"]) for a, t in pairs]
        return {"anls": 100 * sum(values) / len(values)}
    if bench == "chartqa":
        values = [scoring.relaxed_accuracy(a["text"], t["answer"]) for a, t in pairs]
        return {"relaxed_accuracy": 100 * sum(values) / len(values)}
    raise ValueError(f"unknown benchmark {bench!r}")


def _score(args: argparse.Namespace) -> int:
    from ..cli import CliError

    try:
        result = score_answers(args.bench, _read_jsonl(args.answers), _read_jsonl(args.annotations))
    except (KeyError, ValueError) as err:
        raise CliError(f"cannot score {args.bench}: {err}") from err
    print(json.dumps(result, indent=2))
    return 0


def _read_json(path: Path) -> Any:
    from ..cli import CliError

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CliError(f"cannot read {path}: {err}") from err


def _mmmu(args: argparse.Namespace) -> int:
    from ..cli import CliError
    from .benchmarks import mmmu_score

    try:
        print(json.dumps(mmmu_score(_read_json(args.predictions), _read_json(args.answers)), indent=2))
    except (KeyError, TypeError, ZeroDivisionError) as err:
        raise CliError(f"cannot score MMMU: malformed files ({err})") from err
    return 0


def _table(args: argparse.Namespace) -> int:
    from ..cli import CliError
    from .benchmarks import PAPER_RESULTS, results_table

    results = _read_json(args.results)
    if args.compare and args.compare not in PAPER_RESULTS:
        raise CliError(
            f"no paper numbers for {args.compare!r} (known: {', '.join(k for k in PAPER_RESULTS if k[0] != '_')})"
        )
    print(results_table(results, args.compare), end="")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    ev = subparsers.add_parser("eval", help="benchmark runs and scores")
    sub = ev.add_subparsers(dest="eval_command", required=True)
    run = sub.add_parser("run", help="answer a LLaVA-format question file (resumable, sharded)")
    run.add_argument("--model", required=True)
    run.add_argument("--questions", required=True, type=Path)
    run.add_argument("--images", default=None)
    run.add_argument("--out", required=True, type=Path)
    run.add_argument("--batch-size", type=int, default=8)
    run.add_argument("--max-new-tokens", type=int, default=128)
    run.add_argument("--temperature", type=float, default=0.0)
    run.add_argument("--query-len", type=int, default=None)
    run.add_argument("--shard", default=None, help="i/n (default: torchrun's RANK/WORLD_SIZE)")
    run.set_defaults(func=_run)
    score = sub.add_parser("score", help="score answers against annotations (JSONL joined on question_id)")
    score.add_argument(
        "bench",
        choices=[
            "vqa",
            "textvqa",
            "vizwiz",
            "pope",
            "mme",
            "mc",
            "mmbench",
            "seed",
            "scienceqa",
            "ai2d",
            "mmstar",
            "realworldqa",
            "cvbench",
            "docvqa",
            "chartqa",
        ],
    )
    score.add_argument("--answers", required=True, type=Path)
    score.add_argument("--annotations", required=True, type=Path)
    score.set_defaults(func=_score)
    mmmu = sub.add_parser("mmmu", help="score MMMU from the official {id: prediction} and answer-dict files")
    mmmu.add_argument("--predictions", required=True, type=Path)
    mmmu.add_argument("--answers", required=True, type=Path)
    mmmu.set_defaults(func=_mmmu)
    table = sub.add_parser("table", help="Markdown + JSON table of results, optionally against the paper")
    table.add_argument("results", type=Path, help="JSON {benchmark: score}")
    table.add_argument("--compare", default=None, help="a released checkpoint, e.g. fusion-x-3b")
    table.set_defaults(func=_table)
