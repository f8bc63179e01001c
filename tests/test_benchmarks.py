"""Benchmarks are not tests; this only keeps their smoke mode working (one tiny iteration)."""

from __future__ import annotations

import math

from benchmarks.run import main


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
