"""Synthesis throughput: records/s of the procedural backend, and of the LLM path against the fake
OpenAI-compatible server (20 ms per answer) with 32 concurrent requests.

    python -m benchmarks.synth_bench [--scenes 500] [--captions 200]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import yaml
from tests.fake_openai import FakeOpenAI

from fusion.synth.pipeline import Pipeline, load_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenes", type=int, default=500)
    parser.add_argument("--captions", type=int, default=200)
    parser.add_argument("--out", default="synth_bench.json")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "p.yaml").write_text(
            yaml.safe_dump({"output_dir": "p", "image_backend": "procedural", "num_scenes": args.scenes})
        )
        start = time.perf_counter()
        stats = Pipeline(load_pipeline(root / "p.yaml")).run()
        rows["procedural"] = {
            "records": args.scenes,
            "kept": stats["records"],
            "records_per_s": args.scenes / (time.perf_counter() - start),
        }
        (root / "c.txt").write_text("\n".join(f"caption number {i} of a scene" for i in range(args.captions)))
        with FakeOpenAI(delay_s=0.02) as fake:
            (root / "l.yaml").write_text(
                yaml.safe_dump(
                    {
                        "output_dir": "l",
                        "image_backend": "http",
                        "captions": ["c.txt"],
                        "instruction_types": ["short_conversation"],
                        "llm": {"base_url": fake.url, "model": "fake", "concurrency": 32},
                        "http_images": {"url": fake.url + "/images/generations"},
                    }
                )
            )
            start = time.perf_counter()
            stats = Pipeline(load_pipeline(root / "l.yaml")).run()
            rows["fake_llm_32_concurrent"] = {
                "records": args.captions,
                "kept": stats["records"],
                "records_per_s": args.captions / (time.perf_counter() - start),
                "llm_calls": sum(fake.calls.values()),
            }
    for name, row in rows.items():
        print(f"{name:>24} | {row['records_per_s']:8.1f} records/s | {row['records']} records, {row['kept']} kept")
    Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
