"""Benchmarks are not tests; this only keeps their smoke mode working (one tiny iteration)."""

from __future__ import annotations

import json
import math

import torch
from benchmarks.device_parity import main as device_parity
from benchmarks.run import build_config, main, make_inputs, model_flops_per_step

from fusion.modeling_fusion import FusionForCausalLM

from .conftest import fixtures_root


def test_benchmark_smoke_mode_produces_every_figure(tmp_path):
    results = main(["--smoke", "--shape", "tiny", "--device", "cpu", "--out", str(tmp_path / "b.json")])
    assert results["meta"]["smoke"] and results["meta"]["torch"]
    metrics = {row["metric"] for suite in ("vision", "inference", "train") for row in results[suite]}
    for needle in (
        "vision encode ms/image (fused)",
        "vision fused speed-up vs eager",
        "time to first token",
        "merged-sequence build",
        "decode tokens/s at batch 1",
        "train step s (batch 2, checkpointing on)",
    ):
        assert any(needle in m for m in metrics), needle
    for suite in ("vision", "inference", "train"):
        for row in results[suite]:
            assert math.isfinite(row["median"]), row
            if "overhead" not in row["metric"]:  # an overhead is a difference of noisy times: any sign
                assert row["median"] > 0, row
    assert (tmp_path / "b.json").is_file()


def test_benchmark_static_cache_mode(tmp_path):
    results = main(["--smoke", "--suite", "inference", "--cache", "static", "--device", "cpu"])
    assert results["meta"]["cache"] == "static"
    decode = [r for r in results["inference"] if r["metric"].startswith("decode tokens/s")]
    assert decode and all(math.isfinite(r["median"]) and r["median"] > 0 for r in decode)


def test_training_flops_count_the_tokens_each_part_sees():
    """MFU's FLOP count: linear in the batch, and at least 6 x params x tokens for the decoder over
    the merged sequence plus the tower over every image's patches (5 images per sample here)."""
    torch.manual_seed(0)
    model = FusionForCausalLM.from_config(build_config("tiny")).eval()
    flops = {}
    for batch in (1, 2):
        inputs = make_inputs(model, batch, 16, torch.device("cpu"))
        labels = inputs["input_ids"].clone()
        flops[batch] = model_flops_per_step(model, inputs, labels)
    assert flops[2] == 2 * flops[1]
    inner = model.model
    merged = inputs["input_ids"].shape[1] - 2 + inner.vision_tower.num_patches + model.config.default_query_len
    decoder = sum(p.numel() for p in inner.layers.parameters()) + model.lm_head.weight.numel()
    tower = sum(p.numel() for p in inner.vision_tower.parameters())
    assert flops[1] > 6 * (decoder * merged + tower * 5 * inner.vision_tower.num_patches)


def test_device_parity_script_passes_on_cpu(capsys):
    """The accelerator parity check, run on the CPU where the tests already pin every figure: it must
    pass there, and it must have checked every fixture (eager and static-cache decoding)."""
    assert device_parity(["--device", "cpu", "--no-vision", "--fixtures", str(fixtures_root())]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "parity OK"
    checked = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(checked) == len([p for p in fixtures_root().iterdir() if (p / "golden.json").is_file()]) > 0
    assert all(r["dynamic"]["ids_equal"] and r["static"]["ids_equal"] for r in checked)
