"""`fusion train`, `fusion warmup`, `fusion init` and `fusion data check`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def _parse_overrides(extra: list[str]) -> dict[str, Any]:
    from ..cli import CliError

    overrides: dict[str, Any] = {}
    i = 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--"):
            raise CliError(f"unexpected argument {token!r} (overrides are --key value)")
        key = token[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            value = extra[i + 1]
            i += 2
        else:
            value, i = "true", i + 1
        overrides[key] = value
    return overrides


def _train(args: argparse.Namespace) -> int:
    from ..cli import CliError
    from .config import ConfigError, load_config
    from .data import DataError
    from .trainer import TrainingError, train

    tokens = list(args.args)
    resume = "--resume" in tokens
    tokens = [t for t in tokens if t != "--resume"]
    split = next((i for i, t in enumerate(tokens) if t.startswith("--")), len(tokens))
    paths, overrides = tokens[:split], _parse_overrides(tokens[split:])
    if not paths:
        raise CliError("give at least one stage config (YAML)")
    if resume:
        overrides["resume"] = "true"
    previous: str | None = None
    try:
        configs = []
        for n, path in enumerate(paths):
            stage_overrides = dict(overrides)
            config = load_config(path, stage_overrides)
            configs.append(config)
            if n > 0 and "model" not in overrides:
                config.model = None  # filled from the previous stage below
        for config in configs:
            if config.model is None and previous is not None:
                config.model = previous
            summary = train(config)
            previous = config.output_dir
            if int(os.environ.get("RANK", "0")) == 0:  # one summary per stage, not one per process
                print(
                    f"[fusion] {config.stage}: {summary['steps']} steps, final loss {summary['final_loss']}, "
                    f"{summary['samples_skipped']} samples skipped -> {config.output_dir}",
                    file=sys.stderr,
                )
    except (ConfigError, DataError, TrainingError, FileNotFoundError) as err:
        raise CliError(str(err).splitlines()[0]) from err
    return 0


def _warmup(args: argparse.Namespace) -> int:
    from ..cli import CliError
    from .data import DataError
    from .trainer import TrainingError
    from .warmup import WarmupConfig, warm_up

    config = WarmupConfig(
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        group_by_length=args.group_by_length,
        loss_on=args.loss_on,
    )
    try:
        summary = warm_up(args.model, args.data, args.out, config)
    except (DataError, TrainingError, OSError, ValueError) as err:
        raise CliError(str(err).splitlines()[0]) from err
    if int(os.environ.get("RANK", "0")) == 0:  # one summary, not one per process
        print(
            f"[fusion] stage 0: {summary['steps']} steps on {summary['samples']} text samples in "
            f"{summary['processes']} process(es), final loss {summary['final_loss']}, {summary['seconds']} s "
            f"-> {args.out}",
            file=sys.stderr,
        )
    return 0


def _init(args: argparse.Namespace) -> int:
    from ..cli import CliError
    from .init_model import init_fusion_model

    try:
        out = init_fusion_model(
            args.llm,
            args.vision_tower,
            args.out,
            chat_template=args.chat_template,
            projector_type=args.projector_type,
            query_len=args.query_len,
            window_size=args.window_size,
            num_interaction_layers=args.interaction_layers,
            interaction_start=args.interaction_start,
            interaction_stride=args.interaction_stride,
        )
    except (OSError, ValueError) as err:
        raise CliError(str(err).splitlines()[0]) from err
    print(f"[fusion] new FUSION model written to {out}", file=sys.stderr)
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from ..cli import CliError
    from ..processing_fusion import FusionProcessor
    from .data import DataError, check_data

    try:
        processor = FusionProcessor.from_pretrained(args.model)
        report = check_data(args.data, processor, args.image_folder)
    except (DataError, OSError, ValueError) as err:
        raise CliError(str(err).splitlines()[0]) from err
    for problem in report["problems"]:
        print(f"{problem['id']}\t{problem['reason']}")
    print(
        f"[fusion] {report['samples']} samples, {len(report['problems'])} with problems "
        f"({report['images']} images checked)",
        file=sys.stderr,
    )
    return 1 if report["problems"] else 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a stage (or several in a row) from YAML configs",
        description="fusion train CONFIG.yaml [CONFIG2.yaml ...] [--key value ...]; each "
        "later stage starts from the previous stage's output_dir",
    )
    train.add_argument(
        "args",
        nargs=argparse.REMAINDER,
        metavar="CONFIG.yaml [...] [--resume] [--key value ...]",
        help="stage configs, then overrides; --resume continues from the last checkpoint",
    )
    train.set_defaults(func=_train)

    warmup = subparsers.add_parser(
        "warmup",
        help="stage 0: train a fresh decoder on text-only conversations, vision side untouched",
        description="Trains the checkpoint's LLM from a seeded random start on text-only LLaVA-format "
        "data (constant learning rate) and writes the checkpoint with that decoder to --out. Under torchrun "
        "the processes split every batch and take the step one process would.",
    )
    warmup.add_argument("--model", required=True, help="FUSION checkpoint (its tokenizer and chat format are used)")
    warmup.add_argument("--data", nargs="+", required=True, help="text-only JSON, JSONL or YAML mixture files")
    warmup.add_argument("--out", required=True)
    warmup.add_argument("--steps", type=int, default=2000)
    warmup.add_argument("--lr", type=float, default=5e-4)
    warmup.add_argument("--batch-size", type=int, default=32)
    warmup.add_argument("--seed", type=int, default=0)
    warmup.add_argument(
        "--group-by-length",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="batches of similar lengths: less padding, but each batch is mostly one kind of question",
    )
    warmup.add_argument(
        "--loss-on",
        choices=("answers", "all"),
        default="answers",
        help="the tokens the loss is on: the answers only, or every token of the conversation (as an LLM is "
        "pretrained)",
    )
    warmup.set_defaults(func=_warmup)

    init = subparsers.add_parser("init", help="build a new FUSION model from a base LLM and a SigLIP tower")
    init.add_argument("--llm", required=True)
    init.add_argument("--vision-tower", required=True)
    init.add_argument("--out", required=True)
    init.add_argument("--chat-template", default=None, help="phi_3 | llama_3 | qwen_2 (default: by LLM family)")
    init.add_argument("--projector-type", default="mlp2x_gelu")
    init.add_argument("--query-len", default="4,16,36,64,144")
    init.add_argument("--window-size", type=int, default=3)
    init.add_argument("--interaction-layers", type=int, default=10)
    init.add_argument("--interaction-start", type=int, default=0)
    init.add_argument("--interaction-stride", type=int, default=3)
    init.set_defaults(func=_init)

    data = subparsers.add_parser("data", help="training data tools")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser("check", help="report missing/unreadable images and bad conversations, with ids")
    check.add_argument("data", type=Path, help="JSON, JSONL or YAML mixture")
    check.add_argument("--image-folder", default=None)
    check.add_argument("--model", required=True, help="checkpoint folder whose tokenizer and template are used")
    check.set_defaults(func=_data_check)
