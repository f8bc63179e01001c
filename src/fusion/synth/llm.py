"""LLM backends: any OpenAI-compatible endpoint (vLLM, SGLang, OpenAI) and a local transformers model."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Protocol

import httpx

logger = logging.getLogger(__name__)


class LLMError(RuntimeError):
    """The LLM could not answer after all retries."""


class LLMBackend(Protocol):
    async def complete(self, prompt: str, system: str | None = None) -> str: ...


@dataclass
class OpenAIBackend:
    """Chat completions over HTTP with a concurrency limit, timeouts and retries with exponential backoff."""

    base_url: str
    model: str
    api_key: str | None = None
    concurrency: int = 32
    max_retries: int = 4
    timeout_s: float = 120.0
    backoff_s: float = 0.5
    temperature: float = 0.7
    max_tokens: int = 1024

    def __post_init__(self) -> None:
        self._semaphore: asyncio.Semaphore | None = None
        self._client: httpx.AsyncClient | None = None
        self.api_key = self.api_key or os.environ.get("OPENAI_API_KEY")

    async def __aenter__(self) -> OpenAIBackend:
        self._semaphore = asyncio.Semaphore(self.concurrency)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self._client = httpx.AsyncClient(
            base_url=self.base_url.rstrip("/"), headers=headers, timeout=self.timeout_s, limits=limits
        )
        return self

    async def __aexit__(self, *exc) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def complete(self, prompt: str, system: str | None = None, image_url: str | None = None) -> str:
        """``image_url`` (a data URL) makes it a vision request, for a VLM judge."""
        if self._client is None or self._semaphore is None:
            raise RuntimeError("use the backend inside `async with`")
        content: str | list = prompt
        if image_url:
            content = [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": prompt}]
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        last = ""
        async with self._semaphore:
            for attempt in range(self.max_retries + 1):
                try:
                    resp = await self._client.post("/chat/completions", json=body)
                    if resp.status_code == 200:
                        return resp.json()["choices"][0]["message"]["content"] or ""
                    last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                    if resp.status_code not in (408, 409, 429) and resp.status_code < 500:
                        raise LLMError(last)  # a client error does not get better with retries
                except (httpx.TimeoutException, httpx.TransportError) as err:
                    last = f"{type(err).__name__}: {err}"
                except (KeyError, IndexError, ValueError) as err:
                    last = f"malformed response: {err}"
                if attempt < self.max_retries:
                    await asyncio.sleep(self.backoff_s * 2**attempt)
        raise LLMError(f"no answer after {self.max_retries + 1} attempts ({last})")


@dataclass
class TransformersBackend:
    """A local chat model through transformers (runs one prompt at a time in a worker thread)."""

    model_path: str
    max_new_tokens: int = 512
    temperature: float = 0.7

    def __post_init__(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_path, local_files_only=True).eval()
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> TransformersBackend:
        return self

    async def __aexit__(self, *exc) -> None:
        return None

    def _generate(self, prompt: str, system: str | None) -> str:
        import torch

        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        ids = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.inference_mode():
            out = self.model.generate(
                **ids,
                max_new_tokens=self.max_new_tokens,
                do_sample=self.temperature > 0,
                temperature=self.temperature or None,
            )
        return self.tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)

    async def complete(self, prompt: str, system: str | None = None) -> str:
        async with self._lock:
            return await asyncio.to_thread(self._generate, prompt, system)
