"""A deterministic fake OpenAI-compatible server on loopback (chat completions and image generation)."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image


def _qa_answer(prompt: str) -> str:
    subject = re.search(r"description[^:]*:\n(.*?)\n\nWrite", prompt, re.DOTALL)
    topic = subject.group(1).split()[1] if subject and len(subject.group(1).split()) > 1 else "scene"
    shown = subject.group(1).strip() if subject else "a scene"
    if '"options"' in prompt:
        return json.dumps(
            [{"question": f"What is shown about {topic}?", "options": [topic, "a car", "a tree", "sky"], "answer": "A"}]
        )
    return "Here you go:\n" + json.dumps(
        [{"question": f"What does the image show about {topic}?", "answer": f"It shows {shown}"}]
    )


class FakeOpenAI:
    """Answers from the prompt text. Captions containing MALFORMED get non-JSON QA; FLAKY ones fail
    twice with HTTP 500 first; SLOW ones take ``slow_s`` seconds; ``delay_s`` slows every answer.
    The judge scores conversations mentioning "tall" 0.3, others 0.9."""

    def __init__(self, delay_s: float = 0.0, slow_s: float = 0.3):
        self.delay_s, self.slow_s = delay_s, slow_s
        self.calls: Counter[str] = Counter()
        self.vision_calls = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path.endswith("/images/generations"):
                    color = sum(body["prompt"].encode()) % 255
                    buf = io.BytesIO()
                    Image.new("RGB", (32, 24), (color, 255 - color, 90)).save(buf, format="PNG")
                    return self._send(200, {"data": [{"b64_json": base64.b64encode(buf.getvalue()).decode()}]})
                prompt = body["messages"][-1]["content"]
                if isinstance(prompt, list):  # a vision request: count it, answer from its text
                    with fake.lock:
                        fake.vision_calls += 1
                    prompt = next(p["text"] for p in prompt if p["type"] == "text")
                with fake.lock:
                    fake.calls[prompt] += 1
                    count = fake.calls[prompt]
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                if "SLOW" in prompt:
                    time.sleep(fake.slow_s)
                if "FLAKY" in prompt and count <= 2:
                    return self._send(500, {"error": {"message": "injected failure"}})
                if prompt.startswith("Rate how well"):
                    answer = "0.3" if "tall" in prompt else "Score: 0.9"
                elif prompt.startswith("Expand the caption"):
                    caption = prompt.rsplit("Caption:", 1)[1].strip()
                    answer = f"A detailed view of {caption}"
                elif prompt.startswith("Here is the description"):
                    answer = "A variant: " + prompt.rsplit("Description:", 1)[1].strip()
                elif "MALFORMED" in prompt:
                    answer = "Sorry, I cannot produce JSON today."
                else:
                    answer = _qa_answer(prompt)
                return self._send(200, {"choices": [{"message": {"role": "assistant", "content": answer}}]})

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
