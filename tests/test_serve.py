"""The OpenAI-compatible server on loopback, through the official `openai` client."""

from __future__ import annotations

import base64
import io
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from PIL import Image

from fusion.serve.app import ServeLimits

from .serve_utils import MODEL_NAME, live_server


def _data_url(color=(200, 30, 30), size=(40, 30), fmt="PNG") -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


def _huge_png_header(width=20000, height=20000) -> str:
    """A valid PNG header claiming a huge image (the pixel data is never there)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = b"IDAT" + zlib.compress(b"\x00" * 16)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", len(idat) - 4)
        + idat
        + struct.pack(">I", zlib.crc32(idat))
    )
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _user(text: str, image: str | None = None) -> dict:
    content = [{"type": "text", "text": text}]
    if image:
        content.insert(0, {"type": "image_url", "image_url": {"url": image}})
    return {"role": "user", "content": content}


@pytest.fixture(scope="module")
def server():
    with live_server(max_batch=16, batch_window_s=0.05, max_queue=64) as (base, engine, _):
        yield base, engine


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_plain_and_streaming_completion_with_image(client):
    messages = [_user("What is in this image?", _data_url())]
    plain = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=8, temperature=0)
    choice = plain.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert plain.usage.prompt_tokens > 0 and plain.usage.completion_tokens >= 1
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens
    stream = client.chat.completions.create(
        model=MODEL_NAME, messages=messages, max_tokens=8, temperature=0, stream=True
    )
    pieces, finish = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert "".join(pieces) == choice.message.content and finish == choice.finish_reason


def test_multi_turn_with_image(client):
    first = [_user("Describe it.", _data_url((0, 0, 255)))]
    a = client.chat.completions.create(model=MODEL_NAME, messages=first, max_tokens=5, temperature=0)
    second = [*first, {"role": "assistant", "content": a.choices[0].message.content}, _user("And the color?")]
    b = client.chat.completions.create(model=MODEL_NAME, messages=second, max_tokens=5, temperature=0)
    assert b.usage.prompt_tokens > a.usage.prompt_tokens
    assert b.choices[0].message.content is not None


def test_n_and_seed_determinism(client):
    messages = [_user("Tell me something.", _data_url())]
    kwargs = dict(model=MODEL_NAME, messages=messages, max_tokens=12, temperature=1.0, top_p=0.9, n=3, seed=7)
    a = client.chat.completions.create(**kwargs)
    b = client.chat.completions.create(**kwargs)
    assert len(a.choices) == 3
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    c = client.chat.completions.create(**{**kwargs, "seed": 8})
    assert [x.message.content for x in c.choices] != [x.message.content for x in a.choices]


def test_concurrent_requests_match_one_at_a_time(client):
    prompts = [
        [_user(f"Question number {i}?", _data_url((i * 15 % 255, 100, 50)) if i % 3 else None)] for i in range(16)
    ]

    def ask(messages):
        r = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=6, temperature=0)
        return r.choices[0].message.content

    sequential = [ask(m) for m in prompts]
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(ask, prompts))
    assert concurrent == sequential


def test_bad_inputs_get_4xx_and_server_keeps_serving(server, client):
    base, _ = server
    cases = {
        "corrupt base64": ([_user("x", "data:image/png;base64,@@@not-base64@@@")], 400),
        "not an image": ([_user("x", "data:image/png;base64," + base64.b64encode(b"hello world").decode())], 400),
        "huge header": ([_user("x", _huge_png_header())], 413),
        "remote url": ([_user("x", "http://example.com/a.png")], 400),
        "two images": ([_user("x", _data_url()), _user("y", _data_url())], 400),
    }
    for name, (messages, status) in cases.items():
        r = httpx.post(f"{base}/v1/chat/completions", json={"model": MODEL_NAME, "messages": messages}, timeout=60)
        assert r.status_code == status, (name, r.text)
        assert r.json()["error"]["message"], name
    r = httpx.post(f"{base}/v1/chat/completions", json={"model": "nope", "messages": [_user("x")]}, timeout=60)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = httpx.post(
        f"{base}/v1/chat/completions", json={"model": MODEL_NAME, "messages": [_user("word " * 5000)]}, timeout=60
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    r = httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": MODEL_NAME, "messages": [_user("x")], "max_tokens": 10**6},
        timeout=60,
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    r = httpx.post(f"{base}/v1/chat/completions", json={"model": MODEL_NAME, "messages": []}, timeout=60)
    assert r.status_code == 400
    r = httpx.post(
        f"{base}/v1/chat/completions", content=b"{not json", timeout=60, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    ok = client.chat.completions.create(model=MODEL_NAME, messages=[_user("still there?")], max_tokens=3, temperature=0)
    assert ok.choices[0].message.content is not None


def test_models_health_and_metrics(server, client):
    base, _ = server
    assert [m.id for m in client.models.list().data] == [MODEL_NAME]
    assert httpx.get(f"{base}/health").json()["status"] == "ok"
    text = httpx.get(f"{base}/metrics").text
    for name in (
        "fusion_requests_total",
        "fusion_request_latency_seconds",
        "fusion_generated_tokens_total",
        "fusion_queue_depth",
        "fusion_tokens_per_second",
    ):
        assert name in text, name
    assert 'fusion_requests_total{status="200"}' in text


def test_stop_strings_and_disconnect_frees_the_slot(server, client):
    base, engine = server
    full = (
        client.chat.completions.create(model=MODEL_NAME, messages=[_user("Say things.")], max_tokens=20, temperature=0)
        .choices[0]
        .message.content
    )
    if len(full) >= 4:
        stop = full[2:4]
        cut = (
            client.chat.completions.create(
                model=MODEL_NAME, messages=[_user("Say things.")], max_tokens=20, temperature=0, stop=[stop]
            )
            .choices[0]
            .message.content
        )
        assert cut == full[: full.find(stop)] and stop not in cut
    with httpx.stream(
        "POST",
        f"{base}/v1/chat/completions",
        timeout=60,
        json={
            "model": MODEL_NAME,
            "messages": [_user("Long story")],
            "max_tokens": 2000,
            "temperature": 0,
            "stream": True,
        },
    ) as r:
        for _ in r.iter_lines():
            break  # read one event, then hang up
    for _ in range(200):
        if not engine.busy.is_set() and engine.queue.qsize() == 0:
            break
        threading.Event().wait(0.05)
    assert not engine.busy.is_set(), "the abandoned request kept generating"


def test_full_queue_answers_503_with_retry_after():
    with live_server(max_batch=1, batch_window_s=0.0, max_queue=1) as (base, _, _server):
        body = {"model": MODEL_NAME, "messages": [_user("busy?")], "max_tokens": 200, "temperature": 0}

        def post(_):
            return httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(post, range(8)))
        statuses = [r.status_code for r in results]
        assert 503 in statuses and 200 in statuses
        busy = next(r for r in results if r.status_code == 503)
        assert busy.headers["retry-after"] and busy.json()["error"]["type"] == "server_overloaded"


def test_api_key_is_required_when_set():
    with live_server(api_key="sekret", limits=ServeLimits()) as (base, _, _server):
        r = httpx.post(f"{base}/v1/chat/completions", json={"model": MODEL_NAME, "messages": [_user("hi")]})
        assert r.status_code == 401
        good = openai.OpenAI(base_url=base + "/v1", api_key="sekret", max_retries=0)
        assert good.chat.completions.create(model=MODEL_NAME, messages=[_user("hi")], max_tokens=2).choices


def test_graceful_shutdown_finishes_in_flight_requests():
    with live_server() as (base, engine, server):
        body = {
            "model": MODEL_NAME,
            "messages": [_user("Long answer please")],
            "max_tokens": 60,
            "min_tokens": 60,
            "temperature": 0,
        }
        result = {}
        thread = threading.Thread(
            target=lambda: result.setdefault("r", httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120))
        )
        thread.start()
        for _ in range(400):
            if engine.busy.is_set():
                break
            threading.Event().wait(0.01)
        server.should_exit = True  # what SIGTERM does
        thread.join(120)
        response = result["r"]
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] is not None


def test_local_image_files_only_under_the_allowed_folder(tmp_path):
    from fusion.serve.images import ImageLimits, ImageRequestError, load_request_image

    allowed = tmp_path / "allowed"
    allowed.mkdir()
    Image.new("RGB", (20, 10), (1, 2, 3)).save(allowed / "a.png")
    Image.new("RGB", (20, 10), (1, 2, 3)).save(tmp_path / "secret.png")
    with pytest.raises(ImageRequestError, match="disabled"):
        load_request_image(f"file://{allowed / 'a.png'}", ImageLimits())
    limits = ImageLimits(local_dir=allowed)
    assert load_request_image(f"file://{allowed / 'a.png'}", limits).size == (20, 10)
    with pytest.raises(ImageRequestError, match="outside") as err:
        load_request_image(f"file://{allowed / '..' / 'secret.png'}", limits)
    assert err.value.status == 403
    with pytest.raises(ImageRequestError, match=r"too large|more than the limit") as err:
        load_request_image(_data_url(size=(100, 100)), ImageLimits(max_pixels=50))
    assert err.value.status == 413
