"""Serving throughput and latency on the tiny embedded model: requests/s and p50/p95 latency for
1, 8 and 32 concurrent clients against a server started on loopback (bounded request count).

    python -m benchmarks.serve_bench [--requests-per-client 4] [--max-tokens 16] [--out serve_bench.json]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch
from PIL import Image
from tests.serve_utils import MODEL_NAME, live_server


def _body(i: int, max_tokens: int) -> dict:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (i * 37 % 255, 80, 160)).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return {
        "model": MODEL_NAME,
        "max_tokens": max_tokens,
        "temperature": 0,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": f"What is in image {i}?"},
                ],
            }
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--out", default="serve_bench.json")
    args = parser.parse_args()
    rows = []
    with live_server(max_batch=32, batch_window_s=0.01, max_queue=256) as (base, _engine, _server):
        with httpx.Client(timeout=300) as client:
            client.post(f"{base}/v1/chat/completions", json=_body(0, 2))  # warm-up
        for clients in (1, 8, 32):
            latencies: list[float] = []

            def worker(c: int, latencies=latencies) -> None:
                with httpx.Client(timeout=300) as http:
                    for r in range(args.requests_per_client):
                        start = time.perf_counter()
                        resp = http.post(f"{base}/v1/chat/completions", json=_body(c * 100 + r, args.max_tokens))
                        resp.raise_for_status()
                        latencies.append(time.perf_counter() - start)

            start = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(worker, range(clients)))
            wall = time.perf_counter() - start
            lat = sorted(latencies)
            rows.append(
                {
                    "clients": clients,
                    "requests": len(lat),
                    "requests_per_s": len(lat) / wall,
                    "p50_s": statistics.median(lat),
                    "p95_s": lat[min(len(lat) - 1, int(0.95 * len(lat)))],
                }
            )
    meta = {
        "model": "embedded tiny",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "max_tokens": args.max_tokens,
    }
    print(json.dumps(meta))
    print(f"{'clients':>7} | {'req/s':>7} | {'p50 s':>7} | {'p95 s':>7}")
    for r in rows:
        print(f"{r['clients']:>7} | {r['requests_per_s']:7.2f} | {r['p50_s']:7.3f} | {r['p95_s']:7.3f}")
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
