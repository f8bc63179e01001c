"""Images of chat requests: data URLs, and local files or remote URLs only when the operator allows."""

from __future__ import annotations

import base64
import binascii
import io
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP"}


class ImageRequestError(ValueError):
    """A request image is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class ImageLimits:
    max_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    local_dir: Path | None = None  # local files allowed only under this folder
    allow_remote: bool = False


def _check_and_decode(data: bytes, limits: ImageLimits) -> Image.Image:
    if len(data) > limits.max_bytes:
        raise ImageRequestError(f"image is {len(data)} bytes, more than the limit {limits.max_bytes}", 413)
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as err:
        raise ImageRequestError(f"image is too large: {err}", 413) from err
    except (UnidentifiedImageError, OSError) as err:
        raise ImageRequestError(f"not a readable image: {err}") from err
    if img.format not in ALLOWED_FORMATS:
        raise ImageRequestError(f"image format {img.format} is not accepted")
    if img.width * img.height > limits.max_pixels:
        raise ImageRequestError(
            f"image is {img.width}x{img.height} pixels, more than the limit {limits.max_pixels}", 413
        )
    try:
        img.load()
        return img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ImageRequestError(f"image cannot be decoded: {err}") from err


def load_request_image(url: str, limits: ImageLimits) -> Image.Image:
    """Decodes an ``image_url`` value under the server's limits."""
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        if ";base64" not in header:
            raise ImageRequestError("image data URLs must be base64 encoded")
        if len(payload) * 3 // 4 > limits.max_bytes:
            raise ImageRequestError(f"image is larger than the limit of {limits.max_bytes} bytes", 413)
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ImageRequestError(f"image data URL is not valid base64: {err}") from err
        return _check_and_decode(data, limits)
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("http", "https"):
        if not limits.allow_remote:
            raise ImageRequestError("remote image URLs are disabled on this server (use a data URL)")
        with urllib.request.urlopen(url, timeout=10) as resp:
            data = resp.read(limits.max_bytes + 1)
        return _check_and_decode(data, limits)
    if parsed.scheme in ("file", ""):
        if limits.local_dir is None:
            raise ImageRequestError("local image files are disabled on this server (use a data URL)")
        path = Path(urllib.parse.unquote(parsed.path)).resolve()
        root = limits.local_dir.resolve()
        if root not in path.parents:
            raise ImageRequestError("image path is outside the allowed folder", 403)
        if not path.is_file():
            raise ImageRequestError(f"no image file {path.name}", 404)
        return _check_and_decode(path.read_bytes(), limits)
    raise ImageRequestError(f"unsupported image URL scheme {parsed.scheme!r}")
