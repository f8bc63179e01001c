"""FUSION performance benchmarks on random-weight models built from configs (no download).

    python -m benchmarks.run --suite inference|vision|train|all --shape tiny|medium|3b|8b|3b-siglip2|8b-siglip2
                             --device cpu|cuda [--cache dynamic|static] [--batches 1,8,32] [--repeats 5]
                             [--train-batch 4] [--out bench.json] [--smoke]

Every figure is the median of ``--repeats`` timed runs (after a warm-up), with its min and max, and
the JSON records the device, dtype and library versions. ``--smoke`` runs one tiny iteration of
everything (used in CI to keep the benchmarks working; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers

from fusion.configuration_fusion import CONFIG_CLASSES, KNOWN_VISION_TOWERS
from fusion.merge import merge_sequence
from fusion.modeling_fusion import FusionForCausalLM
from fusion.tiny import tiny_config

# LLM shapes of the released models (from their public configs).
PHI35_MINI = dict(
    vocab_size=32064,
    hidden_size=3072,
    intermediate_size=8192,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=131072,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
)
LLAMA31_8B = dict(
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=131072,
    rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
)
FUSION_KEYS = dict(
    mm_projector_type="mlp2x_gelu",
    query_len="4,16,36,64,144",
    window_size=3,
    num_of_vision_sampler_layers=10,
    start_of_vision_sampler_layers=0,
    stride_of_vision_sampler_layers=3,
    tokenizer_model_max_length=4096,
)
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def build_config(shape: str):
    if shape == "tiny":
        return tiny_config("llama")
    if shape == "medium":  # real token counts (so400m geometry: N = 729), small widths
        vision = dict(
            hidden_size=384,
            intermediate_size=1536,
            num_hidden_layers=13,
            num_attention_heads=6,
            patch_size=14,
            image_size=384,
            hidden_act="gelu_pytorch_tanh",
            layer_norm_eps=1e-6,
        )
        return CONFIG_CLASSES["fusion_llama"](
            vocab_size=8192,
            hidden_size=512,
            intermediate_size=1536,
            num_hidden_layers=8,
            num_attention_heads=8,
            num_key_value_heads=4,
            vision_config=vision,
            mm_hidden_size=384,
            mm_vision_tower="medium",
            **{**FUSION_KEYS, "num_of_vision_sampler_layers": 3},
        )
    family, llm = {"3b": ("fusion_phi", PHI35_MINI), "8b": ("fusion_llama", LLAMA31_8B)}[shape.split("-")[0]]
    tower = "google/siglip2-giant-opt-patch16-384" if shape.endswith("siglip2") else "google/siglip-so400m-patch14-384"
    vision = dict(KNOWN_VISION_TOWERS[tower])
    return CONFIG_CLASSES[family](
        **llm, **FUSION_KEYS, vision_config=vision, mm_hidden_size=vision["hidden_size"], mm_vision_tower=tower
    )


def timed(fn: Callable[[], Any], repeats: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Median / min / max seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "repeats": repeats}


def make_inputs(model, batch: int, question_len: int, device: torch.device) -> dict[str, torch.Tensor]:
    cfg = model.config
    vocab = cfg.vocab_size
    g = torch.Generator().manual_seed(0)
    head = torch.randint(10, vocab, (batch, 24), generator=g)
    ques = torch.randint(10, vocab, (batch, question_len), generator=g)
    marks = torch.tensor([[-300, -200]]).expand(batch, 2)
    tail = torch.randint(10, vocab, (batch, 6), generator=g)
    s = model.model.vision_tower.config.image_size
    dtype = next(model.parameters()).dtype
    return {
        "input_ids": torch.cat([head, marks, ques, tail], dim=1).to(device),
        "pixel_values": torch.randn(batch, 5, 3, s, s, generator=g).to(device, dtype),
        "instruct_ids": torch.cat([torch.ones(batch, 1, dtype=torch.long), ques], dim=1).to(device),
    }


def suite_vision(model, args, device) -> list[dict[str, Any]]:
    rows = []
    inputs = make_inputs(model, 1, args.question_len, device)
    tower = model.model.vision_tower
    q = model.config.default_query_len
    # eager: the reference's own attention (scores materialized); masked: its masks on SDPA; fused: ours.
    modes = ("eager", "masked", "fused")
    for attention in modes:
        tower.attention = attention
        t = timed(
            lambda: model.model.encode_images(inputs["pixel_values"], inputs["instruct_ids"], q),
            args.repeats,
            args.warmup,
            device,
        )
        rows.append({"metric": f"vision encode ms/image ({attention})", **_ms(t)})
    tower.attention = model.config.vision_attention
    fused = rows[modes.index("fused")]["median"]
    for base in ("eager", "masked"):
        speed_up = rows[modes.index(base)]["median"] / fused
        rows.append({"metric": f"vision fused speed-up vs {base}", "median": speed_up})
    return rows


def _ms(t: dict[str, float]) -> dict[str, float]:
    return {k: (v * 1000 if k != "repeats" else v) for k, v in t.items()}


def suite_inference(model, args, device) -> list[dict[str, Any]]:
    rows = []
    # A static cache is what CUDA graphs need: on a GPU, transformers compiles the decode step for it.
    gen = {"cache_implementation": "static"} if args.cache == "static" else {}
    one = make_inputs(model, 1, args.question_len, device)
    ttft = timed(
        lambda: model.generate(**one, max_new_tokens=1, do_sample=False, **gen), args.repeats, args.warmup, device
    )
    rows.append({"metric": "time to first token ms (1 image, 64-token question)", **_ms(ttft)})

    # Merge and interaction overhead against a plain LLM prefill of the same merged length.
    merged, vision = model.model.prepare_multimodal_inputs(
        one["input_ids"], None, None, one["pixel_values"], one["instruct_ids"], padding_side="left"
    )
    merge_t = timed(
        lambda: merge_sequence(
            one["input_ids"], None, None, model.model.embed_tokens, vision.image_tokens, vision.latents, 4096, "left"
        ),
        args.repeats,
        args.warmup,
        device,
    )
    rows.append({"metric": "merged-sequence build ms", **_ms(merge_t)})
    fusion_prefill = timed(
        lambda: model(
            inputs_embeds=merged.inputs_embeds,
            attention_mask=merged.attention_mask,
            position_ids=merged.position_ids,
            vision_positions=merged.vision_positions,
            query_positions=merged.query_positions,
            interaction_context=vision.context,
            logits_to_keep=1,
        ),
        args.repeats,
        args.warmup,
        device,
    )
    plain_prefill = timed(
        lambda: model(
            inputs_embeds=merged.inputs_embeds,
            attention_mask=merged.attention_mask,
            position_ids=merged.position_ids,
            logits_to_keep=1,
        ),
        args.repeats,
        args.warmup,
        device,
    )
    overhead = (fusion_prefill["median"] + merge_t["median"]) / plain_prefill["median"] - 1
    rows.append({"metric": "LLM prefill ms, plain (same merged length)", **_ms(plain_prefill)})
    rows.append({"metric": "LLM prefill ms, with interaction layers", **_ms(fusion_prefill)})
    rows.append({"metric": "interaction + merge overhead vs plain prefill", "median": overhead})

    steps = args.decode_steps
    merged_len = merged.inputs_embeds.shape[1]
    for batch in args.batches:
        inputs = make_inputs(model, batch, args.question_len, device)
        # The same decoder on a text-only prompt of the merged length: what the bare LLM decodes at
        # with the same cache and compile settings, the baseline for FUSION's own decode rate.
        g = torch.Generator().manual_seed(1)
        text_only = {
            "input_ids": torch.randint(10, model.config.vocab_size, (batch, merged_len), generator=g).to(device)
        }
        for name, prompt in (
            (f"decode tokens/s at batch {batch}", inputs),
            (f"  same, text-only prompt of {merged_len} tokens", text_only),
        ):
            rows.append({"metric": name, "median": _decode_rate(model, prompt, batch, steps, gen, args, device)})
    return rows


def _decode_rate(model, inputs, batch: int, steps: int, gen: dict, args, device: torch.device) -> float:
    """Tokens/s of decoding alone: a generate of steps + 1 tokens minus one of a single token."""
    short = timed(
        lambda: model.generate(**inputs, max_new_tokens=1, do_sample=False, **gen), args.repeats, args.warmup, device
    )
    long = timed(
        lambda: model.generate(**inputs, max_new_tokens=steps + 1, min_new_tokens=steps + 1, do_sample=False, **gen),
        args.repeats,
        args.warmup,
        device,
    )
    return batch * steps / max(long["median"] - short["median"], 1e-9)


def _numel(module: torch.nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def model_flops_per_step(model, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> float:
    """Training FLOPs of one step (forward + backward, no recomputation): 6 x params x tokens for each
    part over the tokens that part sees, plus 12 x layers x width x sequence per token for attention.

    The parts see different tokens: the vision tower and projector every image patch plus the
    instruction tokens, the decoder the merged sequence, the interaction layers only the latent
    tokens. Counting all parameters against the text tokens alone would misstate MFU both ways.
    One no-grad pass with hooks counts the tokens.
    """
    from fusion.interaction import InteractionLayer

    inner = model.model
    tower_layers = inner.vision_tower.vision_tower.vision_model.encoder.layers
    seen: dict[str, tuple[int, ...]] = {}

    def count(name: str, tokens) -> Callable:
        def hook(module, args) -> None:  # returns None: the layer's inputs stay as they are
            seen.setdefault(name, tokens(args))

        return hook

    hooks = [tower_layers[0].register_forward_pre_hook(count("tower", lambda a: tuple(a[0].shape)))]
    interaction = next((m for m in inner.modules() if isinstance(m, InteractionLayer)), None)
    if interaction is not None:
        hooks.append(interaction.register_forward_pre_hook(count("latents", lambda a: (a[1].batch.numel(),))))
    try:
        with torch.no_grad():
            out = model(**inputs, labels=labels)
    finally:
        for h in hooks:
            h.remove()
    text_tokens, seq = int(out.attention_mask.sum()), out.attention_mask.shape[1]
    b_vis, s_vis = seen["tower"][0], seen["tower"][1]
    cfg, vcfg = model.config, inner.vision_tower.config
    decoder = _numel(inner.layers) + _numel(model.lm_head)
    interaction_params = _numel(getattr(inner, "vision_sampler_layers", None))
    vision = _numel(inner.vision_tower) + _numel(inner.mm_projector) + _numel(getattr(inner, "aux_projector", None))
    dense = decoder * text_tokens + interaction_params * seen.get("latents", (0,))[0] + vision * b_vis * s_vis
    attention = cfg.num_hidden_layers * cfg.hidden_size * seq * text_tokens
    attention += vcfg.num_hidden_layers * vcfg.hidden_size * s_vis * b_vis * s_vis
    return 6 * dense + 12 * attention


def suite_train(model, args, device) -> list[dict[str, Any]]:
    rows = []
    model.train()
    batch = args.train_batch
    inputs = make_inputs(model, batch, args.question_len, device)
    labels = inputs["input_ids"].clone()
    labels[:, :30] = -100
    labels[:, 29] = -400
    flops = model_flops_per_step(model, inputs, labels)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    tokens = {}

    def step():
        out = model(**inputs, labels=labels)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens["n"] = int(out.attention_mask.sum())

    for checkpointing in (False, True):
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = timed(step, args.repeats, args.warmup, device)
        row = {
            "metric": f"train step s (batch {batch}, checkpointing {'on' if checkpointing else 'off'})",
            **t,
            "tokens_per_s": tokens["n"] / t["median"],
            "tflops_per_s": flops / t["median"] / 1e12,
        }
        peak = _peak_flops(device)
        row["mfu"] = flops / t["median"] / peak if peak else None
        row["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
        rows.append(row)
    model.eval()
    return rows


def _peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="all", choices=["inference", "vision", "train", "all"])
    parser.add_argument("--shape", default="tiny", choices=["tiny", "medium", "3b", "8b", "3b-siglip2", "8b-siglip2"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cache", default="dynamic", choices=["dynamic", "static"], help="KV cache for decoding")
    parser.add_argument("--batches", default="1,8,32", help="decode batch sizes, comma-separated")
    parser.add_argument("--train-batch", type=int, default=4, help="samples per training step")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", default=None)
    parser.add_argument("--smoke", action="store_true", help="one tiny iteration of everything")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.shape in ("3b", "8b", "3b-siglip2", "8b-siglip2") and device.type != "cuda":
        parser.error(f"shape {args.shape} is built in bf16 on a GPU; use --device cuda")
    args.question_len, args.decode_steps = 64, 32
    try:
        args.batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        parser.error(f"--batches expects comma-separated integers, got {args.batches!r}")
    if args.smoke:
        args.repeats, args.warmup, args.decode_steps, args.batches, args.train_batch = 1, 0, 2, [1, 2], 2
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    config = build_config(args.shape)
    with torch.device(device):
        model = FusionForCausalLM.from_config(config, dtype=dtype).eval()
    suites = ["vision", "inference", "train"] if args.suite == "all" else [args.suite]
    results: dict[str, Any] = {
        "meta": {
            "shape": args.shape,
            "device": torch.cuda.get_device_name()
            if device.type == "cuda"
            else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)",
            "dtype": str(dtype),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "repeats": args.repeats,
            "cache": args.cache,
            # transformers compiles the decode step (CUDA graphs) for a static cache on a GPU only
            "compiled_decode": args.cache == "static" and device.type == "cuda",
            "smoke": args.smoke,
        },
    }
    runners = {"vision": suite_vision, "inference": suite_inference, "train": suite_train}
    for suite in suites:
        grad = torch.enable_grad() if suite == "train" else torch.inference_mode()
        with grad:
            results[suite] = runners[suite](model, args, device)
    print(json.dumps(results["meta"]))
    for suite in suites:
        for row in results[suite]:
            extra = f"  [{row['min']:.3g} .. {row['max']:.3g}]" if "min" in row else ""
            if "tokens_per_s" in row:
                extra += f"  {row['tokens_per_s']:.0f} tokens/s, {row['tflops_per_s']:.3g} TFLOP/s"
                extra += f", MFU {row['mfu']:.1%}" if row["mfu"] is not None else ""
                extra += f", peak {row['peak_memory_mb']:.0f} MB" if row["peak_memory_mb"] is not None else ""
            print(f"{suite:>9} | {row['metric']:<58} | {row['median']:.4g}{extra}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
