"""`fusion` command line: chat with a FUSION checkpoint (more commands join as they are built)."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_USAGE = 2


class CliError(Exception):
    """A user mistake: reported as one line on stderr with exit code 2."""


def _load(model_dir: str | None, device: str, dtype: str):
    import torch
    from transformers import logging as hf_logging

    from . import MODEL_CLASSES, FusionForCausalLM, VisionTowerNotFoundError
    from .processing_fusion import FusionProcessor
    from .tiny import EMBEDDED_CHECKPOINT

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if model_dir is None:
        print(
            "[fusion] no --model given: using the embedded tiny FUSION checkpoint "
            "(trained on procedural shapes, colors and words only)",
            file=sys.stderr,
        )
        path = EMBEDDED_CHECKPOINT
    else:
        path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise CliError(f"no FUSION checkpoint at {path} (config.json not found)")
    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, json.JSONDecodeError) as err:
        raise CliError(f"cannot read {path / 'config.json'}: {err}") from err
    if model_type not in MODEL_CLASSES:
        raise CliError(
            f"unknown model type {model_type!r} in {path / 'config.json'} (expected one of {', '.join(MODEL_CLASSES)})"
        )
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    try:
        model = FusionForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device).eval()
        processor = FusionProcessor.from_pretrained(path)
    except (VisionTowerNotFoundError, OSError, ValueError) as err:  # missing files, bad config values
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CliError(f"cannot load {path}: {first_line}") from err
    return model, processor


def _chat(args: argparse.Namespace) -> int:
    import torch
    from transformers import TextStreamer

    from .image_processing_fusion import ImageLoadError, load_image

    image = None
    if args.image is not None:
        try:
            image = load_image(args.image)
        except ImageLoadError as err:
            raise CliError(str(err)) from err
    model, processor = _load(args.model, args.device, args.dtype)
    streamer = TextStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    messages: list[dict] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})

    def answer(question: str) -> str:
        content = [{"type": "text", "text": question}]
        if image is not None and not any(m["role"] == "user" for m in messages):
            content.insert(0, {"type": "image"})
        messages.append({"role": "user", "content": content})
        inputs = processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, images=[image] if image is not None else None
        )
        inputs = {k: v.to(args.device) for k, v in inputs.items()}
        sampling = (
            {"do_sample": True, "temperature": args.temperature} if args.temperature > 0 else {"do_sample": False}
        )
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=args.max_new_tokens, streamer=streamer, **sampling)
        reply = processor.decode(out[0, inputs["input_ids"].shape[1] :])
        messages.append({"role": "assistant", "content": reply})
        return reply

    if args.question is not None:
        answer(args.question)
        return 0
    print("Interactive chat: empty line or Ctrl-D to quit.", file=sys.stderr)
    while True:
        try:
            question = input("you> ").strip()
        except EOFError:
            break
        if not question:
            break
        print("fusion> ", end="", flush=True)
        answer(question)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusion", description="FUSION multimodal LLMs")
    sub = parser.add_subparsers(dest="command", required=True)
    chat = sub.add_parser("chat", help="chat about an image (one-shot with --question, else interactive)")
    chat.add_argument("--model", default=None, help="checkpoint folder (default: the embedded tiny model)")
    chat.add_argument("--image", default=None, help="image file")
    chat.add_argument("--question", default=None, help="ask one question and exit")
    chat.add_argument("--system", default=None, help="system prompt (default: the template's)")
    chat.add_argument("--max-new-tokens", type=int, default=128)
    chat.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    chat.add_argument("--device", default="cuda" if _cuda() else "cpu")
    chat.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    chat.set_defaults(func=_chat)
    for module_name in _SUBCOMMAND_MODULES:
        importlib.import_module(module_name).add_subcommand(sub)
    return parser


# Each module adds its own subcommand with `add_subcommand(subparsers)`; its handler is set with
# `set_defaults(func=...)`, returns an exit code and raises `CliError` for user mistakes.
_SUBCOMMAND_MODULES: list[str] = [
    "fusion.train.cli",
    "fusion.serve.cli",
    "fusion.synth.cli",
    "fusion.eval.cli",
]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("FUSION_LOG_LEVEL", "WARNING"))
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as err:
        print(f"fusion: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # Under ``python -m fusion.cli`` (torchrun's launch) this file runs as ``__main__``, a second copy of
    # the module; subcommands raise ``fusion.cli.CliError``, so dispatch through the imported module.
    from fusion.cli import main as _package_main

    sys.exit(_package_main())
