"""A live FUSION server on loopback for tests and benchmarks (tiny embedded model)."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import httpx
import uvicorn

from fusion.modeling_fusion import FusionForCausalLM
from fusion.processing_fusion import FusionProcessor
from fusion.serve.app import ServeLimits, create_app
from fusion.serve.engine import Engine
from fusion.tiny import EMBEDDED_CHECKPOINT

MODEL_NAME = "tiny-fusion"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(ui: bool = False, api_key: str | None = None, limits: ServeLimits | None = None, **engine_kwargs):
    model = FusionForCausalLM.from_pretrained(EMBEDDED_CHECKPOINT).eval()
    processor = FusionProcessor.from_pretrained(EMBEDDED_CHECKPOINT)
    engine = Engine(model, processor, **engine_kwargs)
    app = create_app(engine, MODEL_NAME, limits or ServeLimits(), api_key=api_key, ui=ui)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    engine.start()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    try:
        yield base, engine, server
    finally:
        server.should_exit = True
        thread.join(30)
        engine.stop()
