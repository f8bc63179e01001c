"""`fusion serve`: the API (and optionally the web UI) in one process."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    import torch
    import uvicorn
    from transformers import logging as hf_logging

    from ..cli import CliError
    from ..configuration_fusion import VisionTowerNotFoundError
    from ..modeling_fusion import FusionForCausalLM
    from ..processing_fusion import FusionProcessor
    from ..tiny import EMBEDDED_CHECKPOINT
    from .app import ServeLimits, create_app
    from .engine import Engine
    from .images import ImageLimits

    hf_logging.disable_progress_bar()
    path = Path(args.model) if args.model else EMBEDDED_CHECKPOINT
    if args.model is None:
        print(
            "[fusion] no --model given: serving the embedded tiny FUSION checkpoint (procedural shapes only)",
            file=sys.stderr,
        )
    if not (path / "config.json").is_file():
        raise CliError(f"no FUSION checkpoint at {path} (config.json not found)")
    if args.allow_local_images and not Path(args.allow_local_images).is_dir():
        raise CliError(f"--allow-local-images {args.allow_local_images} is not a folder")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
    kwargs = {"dtype": dtype}
    if args.device_map:
        kwargs["device_map"] = args.device_map
    try:
        model = FusionForCausalLM.from_pretrained(path, **kwargs).eval()
        if not args.device_map:
            model = model.to(args.device)
        processor = FusionProcessor.from_pretrained(path)
    except (OSError, ValueError, VisionTowerNotFoundError) as err:
        raise CliError(f"cannot load {path}: {str(err).splitlines()[0]}") from err
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    engine = Engine(
        model, processor, max_batch=args.max_batch, batch_window_s=args.batch_window_ms / 1000, max_queue=args.max_queue
    )
    limits = ServeLimits(
        max_prompt_tokens=args.max_prompt_tokens or model.config.tokenizer_model_max_length,
        max_tokens=args.max_tokens_limit,
        images=ImageLimits(
            max_bytes=args.max_image_bytes,
            max_pixels=args.max_image_pixels,
            local_dir=Path(args.allow_local_images) if args.allow_local_images else None,
            allow_remote=args.allow_remote_images,
        ),
    )
    app = create_app(
        engine,
        args.served_model_name or path.name,
        limits,
        api_key=args.api_key or os.environ.get("FUSION_API_KEY"),
        ui=args.ui,
    )
    engine.start()
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=60)
    finally:
        engine.stop()  # uvicorn has drained in-flight requests; the engine finishes what it holds
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="OpenAI-compatible API (and web UI) for a FUSION model")
    serve.add_argument("--model", default=None, help="checkpoint folder (default: the embedded tiny model)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--ui", action="store_true", help="serve the web UI at /")
    serve.add_argument("--served-model-name", default=None)
    serve.add_argument("--api-key", default=None, help="require this bearer key (or set FUSION_API_KEY)")
    serve.add_argument("--device", default="cuda" if _cuda() else "cpu")
    serve.add_argument("--device-map", default=None, help="e.g. auto: shard over the visible GPUs")
    serve.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    serve.add_argument("--max-batch", type=int, default=32)
    serve.add_argument("--batch-window-ms", type=float, default=10.0)
    serve.add_argument("--max-queue", type=int, default=64)
    serve.add_argument("--max-prompt-tokens", type=int, default=None)
    serve.add_argument("--max-tokens-limit", type=int, default=2048)
    serve.add_argument("--max-image-bytes", type=int, default=20 * 2**20)
    serve.add_argument("--max-image-pixels", type=int, default=40_000_000)
    serve.add_argument("--allow-local-images", default=None, metavar="DIR")
    serve.add_argument("--allow-remote-images", action="store_true")
    serve.set_defaults(func=_serve)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
