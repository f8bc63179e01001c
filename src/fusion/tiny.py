"""Tiny FUSION checkpoints built from configs (no download): the embedded default and test models."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .chat_templates import get_template
from .configuration_fusion import CONFIG_CLASSES, TEMPLATE_BY_MODEL_TYPE
from .constants import VISION_END, VISION_START
from .image_processing_fusion import FusionImageProcessor
from .modeling_fusion import FusionForCausalLM
from .processing_fusion import FusionProcessor

# The default of `fusion chat`, `fusion serve` and the quick start: trained by recipes/tiny/train.sh.
EMBEDDED_CHECKPOINT = Path(__file__).parent / "assets" / "tiny-fusion"

# Special tokens of each family's chat format: (bos, eos, pad, others).
_FAMILY_TOKENS = {
    "llama": (
        "<|begin_of_text|>",
        "<|eot_id|>",
        "<|reserved_special_token_0|>",
        ["<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>"],
    ),
    "phi": ("<s>", "<|end|>", "<|endoftext|>", ["<unk>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]),
    "qwen2": (None, "<|im_end|>", "<|endoftext|>", ["<|im_start|>"]),
}
_MODEL_TYPES = {"llama": "fusion_llama", "phi": "fusion_phi", "qwen2": "fusion_qwen2"}

_CORPUS = """
What is shown in this image? Answer with one word. Describe the picture in detail. How many objects are there?
What color is the square? Which shape is on the left of the circle? Read the text in the image. Is there a
red triangle above the blue star? The image shows a green circle, a yellow square and two purple stars on a
white background. Yes. No. There are three objects. The word is HELLO. A dog runs in the park near the river.
You are a helpful assistant that answers questions about images accurately and briefly.
"""


def build_tokenizer(family: str, vocab_size: int = 384, corpus: Iterable[str] | None = None) -> PreTrainedTokenizerFast:
    """A small byte-level BPE tokenizer with the family's special tokens and the vision markers,
    trained on ``corpus`` (default: a few built-in sentences)."""
    bos, eos, pad, others = _FAMILY_TOKENS[family]
    specials = [t for t in [bos, *others, eos, pad] if t is not None] + [VISION_START, VISION_END]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus) if corpus is not None else [_CORPUS] * 4, trainer=trainer)
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        model_max_length=4096,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    fast.add_special_tokens({"additional_special_tokens": [VISION_START, VISION_END]})
    return fast


def _tower(hidden_size: int, intermediate_size: int, image_size: int = 64, patch_size: int = 8) -> dict:
    """A SigLIP-style tower (5 layers, 4 heads); 64 px in patches of 8 unless told."""
    return dict(
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=5,
        num_attention_heads=4,
        patch_size=patch_size,
        image_size=image_size,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
    )


def tiny_config(family: str = "llama", vocab_size: int = 384, **overrides):
    """Config of the real architecture at toy size: SigLIP-style tower at 64 px, 4-layer decoder."""
    vision = _tower(hidden_size=32, intermediate_size=64)
    kwargs = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        mm_vision_tower="tiny-siglip",
        mm_hidden_size=32,
        mm_projector_type="mlp2x_gelu",
        query_len="4,16",
        window_size=2,
        num_of_vision_sampler_layers=2,
        start_of_vision_sampler_layers=0,
        stride_of_vision_sampler_layers=2,
        vision_config=vision,
        vision_sampler_num_heads=4,
        tokenizer_model_max_length=4096,
        initializer_range=0.08,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    kwargs.update(overrides)
    return CONFIG_CLASSES[_MODEL_TYPES[family]](**kwargs)


def build_tiny(family: str = "llama", seed: int = 0, **overrides) -> tuple[FusionForCausalLM, FusionProcessor]:
    """A random-weight tiny FUSION model and its processor."""
    tokenizer = build_tokenizer(family)
    model, processor = _assemble(tokenizer, tiny_config(family, vocab_size=len(tokenizer), **overrides), seed)
    return model.eval(), processor


def _assemble(
    tokenizer: PreTrainedTokenizerFast, config, seed: int, system_prompt: str | None = None
) -> tuple[FusionForCausalLM, FusionProcessor]:
    """A seeded random-weight model of ``config`` with the tokenizer's special ids, and its processor."""
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config, name, getattr(tokenizer, name))
    torch.manual_seed(seed)
    model = FusionForCausalLM(config)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.generation_config, name, getattr(tokenizer, name))
    image_processor = FusionImageProcessor(image_size=config.vision_config["image_size"])
    return model, FusionProcessor(image_processor, tokenizer, config.chat_template_name, system_prompt=system_prompt)


def save_tiny(out_dir: str | os.PathLike, family: str = "llama", seed: int = 0) -> Path:
    model, processor = build_tiny(family, seed)
    out = Path(out_dir)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def trained_tiny_config(vocab_size: int, **overrides):
    """The architecture of the shipped trained model: a 128 px SigLIP-style tower in patches of 16
    (an 8 x 8 grid; 5 layers, width 96) and a 4-layer Llama-style decoder of width 128, 2 interaction
    layers, q in {4, 16}."""
    vision = _tower(hidden_size=96, intermediate_size=256, image_size=128, patch_size=16)
    # Only what differs from tiny_config (layer/head counts, q and the interaction schedule are shared).
    kwargs = dict(
        hidden_size=128,
        intermediate_size=384,
        max_position_embeddings=1024,
        tokenizer_model_max_length=1024,
        mm_hidden_size=96,
        inference_query_len=16,
        vision_config=vision,
        initializer_range=0.02,
    )
    kwargs.update(overrides)
    return tiny_config("llama", vocab_size=vocab_size, **kwargs)


def sincos_positions(grid: int, dim: int, scale: float = 1.0) -> torch.Tensor:
    """2-D sine-cosine codes for a row-major ``grid`` x ``grid`` patch grid, [grid * grid, dim]: half the
    dimensions code the column, half the row, at frequencies from 1 down to 1/grid radians per patch (the
    lowest changes monotonically across the grid, so "further left" is one direction). Root mean square
    ``scale``; 1 is the scale of a freshly initialized patch embedding's output."""
    if dim % 4:
        raise ValueError(f"sincos positions need a width divisible by 4, got {dim}")
    n = dim // 4
    freqs = grid ** (-torch.arange(n, dtype=torch.float64) / max(n - 1, 1))
    coords = torch.arange(grid, dtype=torch.float64)[:, None] * freqs  # [grid, n]
    axis = torch.cat([coords.sin(), coords.cos()], dim=1)  # [grid, dim / 2]
    rows = axis[:, None, :].expand(grid, grid, dim // 2)
    cols = axis[None, :, :].expand(grid, grid, dim // 2)
    codes = torch.cat([cols, rows], dim=-1).reshape(grid * grid, dim)
    return (scale * codes / codes.square().mean().sqrt()).float()


def corpus_texts(files: Iterable[str | os.PathLike]) -> list[str]:
    """Every turn of LLaVA-format data files (the tokenizer's training text)."""
    texts = []
    for f in files:
        for record in json.loads(Path(f).read_text(encoding="utf-8")):
            texts += [t["value"].replace("<image>", "") for t in record["conversations"]]
    return texts


def init_from_corpus(
    corpus_files: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    vocab_size: int = 1024,
    seed: int = 0,
    decoder: str | os.PathLike | None = None,
    system_prompt: str | None = None,
    vision_positions: str = "random",
    vision_position_scale: float = 1.0,
    **overrides,
) -> Path:
    """A fresh (random-weight) model of :func:`trained_tiny_config` with a tokenizer trained on the data:
    the starting point of the tiny recipe's stage 0. With ``decoder`` (a checkpoint of the same tokenizer
    and LLM config, e.g. an earlier run's stage 0), its decoder weights replace the random ones.
    ``vision_positions="sincos"`` starts the tower's position embeddings from :func:`sincos_positions`
    (still learned) instead of small random values, at root mean square ``vision_position_scale``: training
    grows the patch embedding's output about 16x while Adam barely moves the position embedding, so codes
    that start at the patch scale end up a few percent of the tower's input."""
    # Checked before the tokenizer is trained (the slow part), so a bad option fails at once.
    if vision_positions not in ("random", "sincos"):
        raise ValueError(f"vision_positions must be 'random' or 'sincos', got {vision_positions!r}")
    if not vision_position_scale > 0:
        raise ValueError(f"vision_position_scale must be positive, got {vision_position_scale}")
    if vision_position_scale != 1.0 and vision_positions != "sincos":
        raise ValueError("vision_position_scale applies to vision_positions='sincos' only")
    # The system prompt is in every sample: train on it so it costs a few tokens, not one per byte.
    system = system_prompt
    if system is None:
        system = get_template(TEMPLATE_BY_MODEL_TYPE["fusion_llama"]).default_system
    corpus = [system] * 100 + corpus_texts(corpus_files)
    tokenizer = build_tokenizer("llama", vocab_size, corpus)
    config = trained_tiny_config(len(tokenizer), **overrides)
    model, processor = _assemble(tokenizer, config, seed, system_prompt)
    if vision_positions == "sincos":
        emb = model.model.vision_tower.vision_tower.vision_model.embeddings.position_embedding
        grid = round(emb.num_embeddings**0.5)
        with torch.no_grad():
            emb.weight.copy_(sincos_positions(grid, emb.embedding_dim, vision_position_scale))
    if decoder is not None:
        from .train.warmup import copy_decoder

        trained = FusionProcessor.from_pretrained(decoder)
        if trained.tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ValueError(f"{decoder} was trained with another tokenizer (a different corpus)")
        if trained.template != processor.template:
            raise ValueError(f"{decoder} was trained with another system prompt or chat format")
        copy_decoder(FusionForCausalLM.from_pretrained(decoder, dtype=torch.float32), model)
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fusion.tiny",
        description="Tiny FUSION models: with --corpus, the fresh model the tiny recipe trains; without, a "
        "random-weight test model.",
    )
    parser.add_argument("--corpus", nargs="+", help="LLaVA-format data files the tokenizer is trained on")
    parser.add_argument("--out", help="output folder")
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--decoder", help="take the decoder weights from this checkpoint (same corpus and LLM)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (JSON value)")
    parser.add_argument("--system-prompt", help="the chat format's system turn (default: the family's)")
    parser.add_argument(
        "--vision-positions",
        choices=("random", "sincos"),
        default="random",
        help="initial position embeddings of the vision tower",
    )
    parser.add_argument(
        "--vision-position-scale",
        type=float,
        default=1.0,
        help="root mean square of the sincos position embeddings (1: a fresh patch embedding's output)",
    )
    args = parser.parse_args(argv)
    if not args.out:  # never a default: the embedded checkpoint is the trained model, not to overwrite
        parser.error("--out is required")
    if not args.corpus:
        print(save_tiny(args.out))
        return
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key] = _parse_value(value)
    try:
        out = init_from_corpus(
            args.corpus,
            args.out,
            args.vocab_size,
            args.seed,
            args.decoder,
            args.system_prompt,
            args.vision_positions,
            args.vision_position_scale,
            **overrides,
        )
        print(out)
    except (OSError, ValueError) as err:
        parser.error(str(err).splitlines()[0])


if __name__ == "__main__":
    main()
