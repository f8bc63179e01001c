"""`fusion synth run PIPELINE.yaml [--shard i/n]` and `fusion synth merge DIR`."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


def _shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or int(match.group(2)) < 1 or int(match.group(1)) >= int(match.group(2)):
        raise argparse.ArgumentTypeError(f"--shard must be i/n with 0 <= i < n, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _run(args: argparse.Namespace) -> int:
    from ..cli import CliError
    from .pipeline import Pipeline, SynthConfigError, load_pipeline

    try:
        config = load_pipeline(args.pipeline, args.out)
        pipeline = Pipeline(config, shard=args.shard)
        stats = pipeline.run(finalize=args.shard[1] == 1)
    except SynthConfigError as err:
        raise CliError(str(err)) from err
    if stats is None:
        print(
            f"[fusion] shard {args.shard[0]}/{args.shard[1]} done in {config.output_dir}; "
            f"run `fusion synth merge {config.output_dir}` when every shard has finished",
            file=sys.stderr,
        )
    else:
        print(json.dumps(stats, indent=2))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from ..cli import CliError
    from .pipeline import SynthConfigError, finalize_outputs, load_pipeline, recorded_filters

    if not args.dir.is_dir():
        raise CliError(f"no synthesis output folder at {args.dir}")
    try:  # the run's own filters; --pipeline for folders written before runs recorded them
        filters = load_pipeline(args.pipeline).filters if args.pipeline else recorded_filters(args.dir)
    except SynthConfigError as err:
        hint = "" if args.pipeline else "; pass the run's pipeline with --pipeline"
        raise CliError(f"{err}{hint}") from err
    print(json.dumps(finalize_outputs([args.dir], args.dir, filters), indent=2))
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    synth = subparsers.add_parser("synth", help="synthesize training data (captions -> images -> QA)")
    sub = synth.add_subparsers(dest="synth_command", required=True)
    run = sub.add_parser("run", help="run (or resume) a pipeline")
    run.add_argument("pipeline", type=Path)
    run.add_argument("--shard", type=_shard, default=(0, 1), help="i/n: this machine's share of the records")
    run.add_argument("--out", default=None, help="output folder (default: the pipeline's output_dir)")
    run.set_defaults(func=_run)
    merge = sub.add_parser("merge", help="deduplicate and export the shards written into one folder")
    merge.add_argument("dir", type=Path)
    merge.add_argument("--pipeline", type=Path, default=None, help="take the filters from this pipeline YAML")
    merge.set_defaults(func=_merge)
