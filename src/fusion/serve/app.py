"""The HTTP app: OpenAI-compatible chat completions, models, health, metrics and the web UI."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .engine import Engine, QueueFullError, SamplingParams, Sequence
from .images import ImageLimits, ImageRequestError, load_request_image
from .schemas import ChatCompletionRequest

logger = logging.getLogger("fusion.serve")
UI_PAGE = Path(__file__).parent / "ui" / "index.html"


@dataclass
class ServeLimits:
    max_images: int = 1  # a FUSION conversation has one image
    max_prompt_tokens: int = 4096
    max_tokens: int = 2048
    default_max_tokens: int = 256
    images: ImageLimits | None = None


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}


def _error_body(status: int, message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code or str(status)}}


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("fusion_requests_total", "Chat completion requests", ["status"], registry=self.registry)
        self.latency = Histogram(
            "fusion_request_latency_seconds",
            "Request latency",
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
        )
        self.tokens = Counter("fusion_generated_tokens_total", "Generated tokens", registry=self.registry)
        self.tokens_per_s = Gauge(
            "fusion_tokens_per_second", "Generated tokens per second (last request)", registry=self.registry
        )
        self.queue = Gauge("fusion_queue_depth", "Requests waiting for the engine", registry=self.registry)


def create_app(
    engine: Engine, model_name: str, limits: ServeLimits, api_key: str | None = None, ui: bool = False
) -> FastAPI:
    """Builds the app around a started :class:`Engine` (the caller owns its lifetime)."""
    app = FastAPI(title="FUSION", docs_url=None, redoc_url=None)
    metrics = _Metrics()
    metrics.queue.set_function(lambda: engine.queue.qsize())
    processor = engine.processor
    image_limits = limits.images or ImageLimits()

    @app.exception_handler(APIError)
    async def _api_error(request: Request, err: APIError):
        return JSONResponse(
            _error_body(err.status, err.message, err.type, err.param, err.code), err.status, headers=err.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return JSONResponse(
            _error_body(400, f"{where}: {first.get('msg', 'invalid request')}", "invalid_request_error", where or None),
            400,
        )

    @app.middleware("http")
    async def _auth_and_ids(request: Request, call_next):
        request.state.request_id = request.headers.get("x-request-id") or f"req-{uuid.uuid4().hex[:16]}"
        if api_key and request.url.path.startswith("/v1/"):
            if request.headers.get("authorization", "") != f"Bearer {api_key}":
                return JSONResponse(_error_body(401, "invalid or missing API key", "authentication_error"), 401)
        response = await call_next(request)
        response.headers["x-request-id"] = request.state.request_id
        return response

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name, "queue_depth": engine.queue.qsize()}

    @app.get("/metrics")
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "fusion"}]}

    if ui:

        @app.get("/", response_class=HTMLResponse)
        async def index():
            return UI_PAGE.read_text(encoding="utf-8").replace("{{MODEL}}", model_name)

    def build_prompt(req: ChatCompletionRequest) -> tuple[str, Any, str]:
        messages, images = [], []
        for n, msg in enumerate(req.messages):
            if isinstance(msg.content, str) or msg.content is None:
                messages.append({"role": msg.role, "content": msg.content or ""})
                continue
            parts = []
            for part in msg.content:
                if part.type == "text":
                    parts.append({"type": "text", "text": part.text or ""})
                elif part.image_url is not None:
                    if msg.role != "user":
                        raise APIError(400, "images are accepted in user messages only", param=f"messages.{n}")
                    try:
                        image = load_request_image(part.image_url.url, image_limits)
                    except ImageRequestError as err:
                        raise APIError(err.status, str(err), param=f"messages.{n}.content") from err
                    images.append(image)
                    parts.append({"type": "image"})
            messages.append({"role": msg.role, "content": parts})
        if len(images) > limits.max_images:
            raise APIError(
                400,
                f"{len(images)} images in one conversation; this model takes at most {limits.max_images}",
                param="messages",
            )
        if not any(m["role"] == "user" for m in messages):
            raise APIError(400, "the conversation has no user message", param="messages")
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        last_user = next(m for m in reversed(messages) if m["role"] == "user")
        content = last_user["content"]
        question = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
        return prompt, (images[0] if images else None), question

    @app.post("/v1/chat/completions")
    async def chat(req: ChatCompletionRequest, request: Request):
        started = time.perf_counter()
        rid = request.state.request_id
        if req.model != model_name:
            metrics.requests.labels("404").inc()
            raise APIError(
                404,
                f"model {req.model!r} does not exist (this server serves {model_name!r})",
                param="model",
                code="model_not_found",
            )
        max_tokens = req.max_completion_tokens or req.max_tokens or limits.default_max_tokens
        if max_tokens > limits.max_tokens:
            raise APIError(
                400, f"max_tokens {max_tokens} is more than this server's limit {limits.max_tokens}", param="max_tokens"
            )
        prompt, image, question = build_prompt(req)
        prompt_tokens = len(processor.tokenize_prompt(prompt))
        if prompt_tokens > limits.max_prompt_tokens:
            raise APIError(
                400,
                f"the prompt has {prompt_tokens} tokens, more than the limit {limits.max_prompt_tokens}",
                param="messages",
                code="context_length_exceeded",
            )
        stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        seqs = []
        for i in range(req.n):
            params = SamplingParams(
                max_tokens=max_tokens,
                temperature=req.temperature,
                top_p=req.top_p,
                stop=stops,
                seed=None if req.seed is None else req.seed + i,
            )

            def emit(kind: str, payload: Any, i: int = i) -> None:
                loop.call_soon_threadsafe(events.put_nowait, (i, kind, payload))

            seqs.append(Sequence(prompt, image, question, params, emit, index=i))
        try:
            engine.submit(seqs)
        except QueueFullError as err:
            metrics.requests.labels("503").inc()
            raise APIError(503, str(err), "server_overloaded", headers={"Retry-After": "1"}) from err
        created = int(time.time())
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        logger.info(
            json.dumps(
                {
                    "event": "request",
                    "request_id": rid,
                    "id": cid,
                    "n": req.n,
                    "prompt_tokens": prompt_tokens,
                    "max_tokens": max_tokens,
                    "stream": req.stream,
                }
            )
        )

        def finish_log(status: int) -> None:
            elapsed = time.perf_counter() - started
            generated = sum(len(s.tokens) for s in seqs)
            metrics.requests.labels(str(status)).inc()
            metrics.latency.observe(elapsed)
            metrics.tokens.inc(generated)
            metrics.tokens_per_s.set(generated / elapsed if elapsed > 0 else 0.0)
            logger.info(
                json.dumps(
                    {
                        "event": "done",
                        "request_id": rid,
                        "id": cid,
                        "status": status,
                        "completion_tokens": generated,
                        "seconds": round(elapsed, 4),
                    }
                )
            )

        def usage() -> dict[str, int]:
            completion = sum(len(s.tokens) for s in seqs)
            return {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
            }

        if not req.stream:
            texts = [""] * req.n
            done = 0
            try:
                while done < req.n:
                    i, kind, payload = await events.get()
                    if kind == "delta":
                        texts[i] += payload
                    elif kind == "done":
                        done += 1
                    elif kind == "error":
                        raise APIError(500, f"generation failed: {payload}", "server_error")
            except asyncio.CancelledError:
                for s in seqs:
                    s.cancelled.set()
                raise
            finish_log(200)
            return {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model_name,
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": texts[i]},
                        "finish_reason": seqs[i].finish_reason,
                    }
                    for i in range(req.n)
                ],
                "usage": usage(),
            }

        async def stream():
            def chunk(delta: dict, i: int, finish: str | None = None) -> str:
                body = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model_name,
                    "choices": [{"index": i, "delta": delta, "finish_reason": finish}],
                }
                return f"data: {json.dumps(body)}\n\n"

            done = 0
            completed = False
            try:
                for i in range(req.n):
                    yield chunk({"role": "assistant", "content": ""}, i)
                while done < req.n:
                    i, kind, payload = await events.get()
                    if kind == "delta":
                        yield chunk({"content": payload}, i)
                    elif kind == "done":
                        done += 1
                        yield chunk({}, i, payload)
                    elif kind == "error":
                        err = _error_body(500, f"generation failed: {payload}", "server_error")
                        yield f"data: {json.dumps(err)}\n\n"
                        break
                if (req.stream_options or {}).get("include_usage"):
                    body = {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model_name,
                        "choices": [],
                        "usage": usage(),
                    }
                    yield f"data: {json.dumps(body)}\n\n"
                yield "data: [DONE]\n\n"
                completed = True
            finally:
                if not completed:  # the client went away: free its slots in the batch
                    for s in seqs:
                        s.cancelled.set()
                finish_log(200 if completed else 499)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "x-request-id": rid}
        )

    return app
