"""The `static_hd` image processor: four tiles of the 2S x 2S image plus the whole image at S x S."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from transformers.image_processing_base import BatchFeature, ImageProcessingMixin

ImageLike = Image.Image | str | os.PathLike | bytes | np.ndarray | None


class ImageLoadError(ValueError):
    """An input image could not be read or decoded."""


def load_image(image: ImageLike, max_pixels: int | None = None) -> Image.Image:
    """Opens a PIL image (path, bytes, array or image), fully decoded and in RGB.

    Truncated or corrupt files raise :class:`ImageLoadError` naming the input; nothing is replaced.
    """
    name = image if isinstance(image, (str, os.PathLike)) else type(image).__name__
    try:
        if isinstance(image, Image.Image):
            img = image
        elif isinstance(image, (str, os.PathLike)):
            img = Image.open(image)
        elif isinstance(image, (bytes, bytearray)):
            img = Image.open(io.BytesIO(image))
        elif isinstance(image, np.ndarray):
            img = Image.fromarray(image)
        else:
            raise ImageLoadError(f"unsupported image input of type {type(image).__name__}")
        if max_pixels is not None and img.width * img.height > max_pixels:
            raise ImageLoadError(f"image {name} has {img.width}x{img.height} pixels, more than the limit {max_pixels}")
        img.load()
        return img.convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError, TypeError) as err:
        if isinstance(err, ImageLoadError):
            raise
        raise ImageLoadError(f"cannot read image {name}: {err}") from err


class FusionImageProcessorKwargs(TypedDict, total=False):
    """The constructor's options; transformers (>= 5.25) reads ``valid_kwargs`` to route
    ``from_pretrained(..., **kwargs)`` to them."""

    image_size: int
    image_mean: Sequence[float]
    image_std: Sequence[float]
    image_aspect_ratio: str
    max_pixels: int | None


class FusionImageProcessor(ImageProcessingMixin):
    """``processor(images=[...], return_tensors="pt")["pixel_values"]`` -> [N, 5, 3, S, S].

    Items 0-3: the image resized to 2S x 2S (PIL's default filter) cut into four S x S tiles,
    row-major; item 4: the image resized to S x S. Values (x / 255 - mean) / std. ``None`` in the
    list stands for a sample without an image and gives zeros, as the reference batches it.
    """

    model_input_names = ["pixel_values"]
    valid_kwargs = FusionImageProcessorKwargs

    def __init__(
        self,
        image_size: int = 384,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
        image_aspect_ratio: str = "static_hd",
        max_pixels: int | None = 100_000_000,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if image_aspect_ratio != "static_hd":
            raise ValueError(f"only image_aspect_ratio='static_hd' is supported, got {image_aspect_ratio!r}")
        self.image_size = int(image_size)
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.image_aspect_ratio = image_aspect_ratio
        self.max_pixels = max_pixels

    def _normalize(self, img: Image.Image) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float()
        std = torch.tensor(self.image_std).view(3, 1, 1)
        mean = torch.tensor(self.image_mean).view(3, 1, 1)
        return x / (255.0 * std) - mean / std

    def process_one(self, image: ImageLike) -> torch.Tensor:
        """[5, 3, S, S] for one image (zeros for ``None``)."""
        s = self.image_size
        if image is None:
            return torch.zeros(5, 3, s, s)
        img = load_image(image, self.max_pixels)
        big = img.resize((2 * s, 2 * s))
        tiles = [big.crop((c * s, r * s, (c + 1) * s, (r + 1) * s)) for r in range(2) for c in range(2)]
        return torch.stack([self._normalize(t) for t in [*tiles, img.resize((s, s))]])

    def preprocess(
        self, images: ImageLike | Sequence[ImageLike], return_tensors: str | None = "pt", **kwargs: Any
    ) -> BatchFeature:
        if not isinstance(images, (list, tuple)):
            images = [images]
        pixel_values = torch.stack([self.process_one(img) for img in images])
        return BatchFeature({"pixel_values": pixel_values}, tensor_type=return_tensors)

    __call__ = preprocess
