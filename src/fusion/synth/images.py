"""Image backends: procedural (exact scenes), any diffusers text-to-image pipeline, an HTTP image API."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image


def side_by_side(left: Image.Image, right: Image.Image, gap: int = 8) -> Image.Image:
    """Two similar images as one (FUSION takes one image per conversation)."""
    h = max(left.height, right.height)
    canvas = Image.new("RGB", (left.width + gap + right.width, h), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + gap, 0))
    return canvas


@dataclass
class DiffusersBackend:
    """Any diffusers text-to-image pipeline by name or folder (FLUX.1-dev as in the paper)."""

    pipeline: str | Any
    steps: int = 28
    guidance_scale: float = 3.5
    width: int = 768
    height: int = 768
    device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.pipeline, str):
            import torch
            from diffusers import DiffusionPipeline

            dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
            self.pipeline = DiffusionPipeline.from_pretrained(self.pipeline, torch_dtype=dtype)
            self.pipeline.to(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def generate(self, prompt: str, seed: int) -> Image.Image:
        import torch

        generator = torch.Generator(device="cpu").manual_seed(seed)
        out = self.pipeline(
            prompt=prompt,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance_scale,
            width=self.width,
            height=self.height,
            generator=generator,
            **self.extra,
        )
        return out.images[0].convert("RGB")


@dataclass
class HttpImageBackend:
    """An OpenAI-style images endpoint (`POST {url}` with {"prompt", "size", "seed"} -> b64 image)."""

    url: str
    api_key: str | None = None
    size: str = "768x768"
    timeout_s: float = 300.0

    def generate(self, prompt: str, seed: int) -> Image.Image:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        resp = httpx.post(
            self.url,
            json={"prompt": prompt, "size": self.size, "seed": seed, "response_format": "b64_json"},
            headers=headers,
            timeout=self.timeout_s,
        )
        resp.raise_for_status()
        data = resp.json()["data"][0]["b64_json"]
        return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
