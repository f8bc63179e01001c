"""Training throughput of a tiny FUSION model: samples/s, tokens/s and peak memory, with gradient
checkpointing on and off. Everything is built from configs in a temporary folder (no download).

    python benchmarks/train_bench.py [--steps 20] [--out train_bench.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.train_utils import make_base_models, make_dataset

from fusion.train import load_config, train
from fusion.train.init_model import init_fusion_model


def run_one(root: Path, checkpointing: bool, steps: int) -> dict:
    config = load_config(
        None,
        {
            "model": str(root / "init"),
            "data": str(root / "data.json"),
            "image_folder": str(root / "images"),
            "output_dir": str(root / f"out-{checkpointing}"),
            "global_batch_size": 8,
            "micro_batch_size": 4,
            "max_steps": steps,
            "mixed_precision": "no",
            "num_workers": 0,
            "report_to": [],
            "save_steps": 0,
            "gradient_checkpointing": checkpointing,
        },
    )
    summary = train(config)
    return {
        "gradient_checkpointing": checkpointing,
        "steps": summary["steps"],
        "samples_per_second": summary["samples_per_second"],
        "tokens_per_second": summary["tokens_per_second"],
        "peak_memory_mb": summary["peak_memory_mb"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default="train_bench.json")
    parser.add_argument("--single", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:  # one configuration per process, so peak memory is its own
        print(json.dumps(run_one(Path(args.root), args.single == "on", args.steps)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        llm, tower = make_base_models(root)
        init_fusion_model(
            llm,
            tower,
            root / "init",
            query_len="1,4",
            window_size=2,
            num_interaction_layers=2,
            interaction_start=0,
            interaction_stride=1,
        )
        make_dataset(root, n=64, text_only=16)
        for mode in ("off", "on"):
            res = subprocess.run(
                [sys.executable, __file__, "--single", mode, "--root", tmp, "--steps", str(args.steps)],
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    meta = {
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({platform.machine()})",
        "dtype": "float32",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "global_batch": 8,
        "micro_batch": 4,
    }
    print(json.dumps(meta))
    print(f"{'checkpointing':>13} | {'samples/s':>9} | {'tokens/s':>9} | {'peak MB':>8}")
    for r in rows:
        print(
            f"{r['gradient_checkpointing']!s:>13} | {r['samples_per_second']:9.1f} | {r['tokens_per_second']:9.0f} | "
            f"{r['peak_memory_mb']:8.0f}"
        )
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
