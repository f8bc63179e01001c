"""FUSION configuration: the LLM's own config plus the FUSION keys of the reference `config.json`.

One config class per LLM family (``fusion_phi``, ``fusion_llama``, ``fusion_qwen2``) so that the
reference checkpoint's `config.json` loads as it is. Everything the model builds is derived from
these fields (and from the vision tower config resolved by :func:`resolve_vision_config`); nothing
about shapes or schedules is hard-coded elsewhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import LlamaConfig, Phi3Config, Qwen2Config, SiglipVisionConfig

# Towers the released checkpoints were built on. The FUSION checkpoint does not store the tower's
# head count, so without the tower's own folder these are the facts we need (from the tower configs).
KNOWN_VISION_TOWERS: dict[str, dict[str, Any]] = {
    "google/siglip-so400m-patch14-384": dict(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        patch_size=14,
        image_size=384,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
    ),
    "google/siglip2-giant-opt-patch16-384": dict(
        hidden_size=1536,
        intermediate_size=6144,
        num_hidden_layers=40,
        num_attention_heads=16,
        patch_size=16,
        image_size=384,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
    ),
}

_VISION_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "patch_size",
    "image_size",
    "hidden_act",
    "layer_norm_eps",
    "num_channels",
    "attention_dropout",
)

TEMPLATE_BY_MODEL_TYPE = {"fusion_phi": "phi_3", "fusion_llama": "llama_3", "fusion_qwen2": "qwen_2"}


class FusionConfigMixin:
    """Derived quantities shared by every FUSION config class."""

    @property
    def query_lengths(self) -> list[int]:
        """Allowed latent-token counts q (each a perfect square)."""
        values = [int(v) for v in str(self.query_len).split(",") if v.strip()]
        for q in values:
            if round(q**0.5) ** 2 != q:
                raise ValueError(f"query_len entries must be perfect squares, got {q}")
        if not values:
            raise ValueError("query_len is empty")
        return values

    @property
    def default_query_len(self) -> int:
        """q used at inference: `inference_query_len` if set, else the largest allowed value."""
        if self.inference_query_len is not None:
            return int(self.inference_query_len)
        return max(self.query_lengths)

    @property
    def interaction_layer_indices(self) -> list[int]:
        """LLM decoder layer after which interaction layer k runs (only those that exist)."""
        start, stride = self.start_of_vision_sampler_layers, self.stride_of_vision_sampler_layers
        idx = [start + k * stride for k in range(self.num_of_vision_sampler_layers)]
        return [i for i in idx if 0 <= i < self.num_hidden_layers]

    @property
    def chat_template_name(self) -> str:
        return self.chat_template or TEMPLATE_BY_MODEL_TYPE[self.model_type]

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        # The reference (transformers 4.x) reads `rope_theta`/`rope_scaling`, not `rope_parameters`.
        rope = out.get("rope_parameters") or {}
        if "rope_theta" in rope:
            out.setdefault("rope_theta", rope["rope_theta"])
            if rope.get("rope_type", "default") != "default":
                out.setdefault("rope_scaling", {k: v for k, v in rope.items() if k != "rope_theta"})
        return out


def _fusion_fields(cls):
    """Adds the FUSION keys (names as in the reference config.json) to an LLM config class."""
    cls.__annotations__ = {
        "mm_vision_tower": str | None,
        "mm_hidden_size": int | None,
        "mm_projector_type": str,
        "query_len": str,
        "window_size": int,
        "num_of_vision_sampler_layers": int,
        "start_of_vision_sampler_layers": int,
        "stride_of_vision_sampler_layers": int,
        "image_aspect_ratio": str,
        "mm_use_im_start_end": bool,
        "tokenizer_model_max_length": int | None,
        "tokenizer_padding_side": str,
        "vision_config": dict | None,
        "inference_query_len": int | None,
        "vision_sampler_num_heads": int,
        "vision_text_mask": str,
        "mapping_loss_weight": float,
        "text_guided_vision": bool,
        "chat_template": str | None,
        "text_only_vision": str,
        "vision_attention": str,
        **cls.__annotations__,
    }
    defaults = dict(
        mm_vision_tower=None,
        mm_hidden_size=None,
        mm_projector_type="mlp2x_gelu",
        query_len="4,16,36,64,144",
        window_size=3,
        num_of_vision_sampler_layers=10,
        start_of_vision_sampler_layers=0,
        stride_of_vision_sampler_layers=3,
        image_aspect_ratio="static_hd",
        mm_use_im_start_end=True,
        tokenizer_model_max_length=4096,
        tokenizer_padding_side="right",
        vision_config=None,
        inference_query_len=None,
        vision_sampler_num_heads=16,
        vision_text_mask="reference",
        mapping_loss_weight=0.1,
        text_guided_vision=True,
        chat_template=None,
        text_only_vision="reference",
        vision_attention="fused",
    )
    for k, v in defaults.items():
        setattr(cls, k, v)
    return cls


@strict
@_fusion_fields
class FusionPhiConfig(FusionConfigMixin, Phi3Config):
    """FUSION on a Phi-3 / Phi-3.5 decoder (`model_type: fusion_phi`)."""

    model_type = "fusion_phi"


@strict
@_fusion_fields
class FusionLlamaConfig(FusionConfigMixin, LlamaConfig):
    """FUSION on a Llama-3.x decoder (`model_type: fusion_llama`)."""

    model_type = "fusion_llama"


@strict
@_fusion_fields
class FusionQwen2Config(FusionConfigMixin, Qwen2Config):
    """FUSION on a Qwen2 / Qwen2.5 decoder (`model_type: fusion_qwen2`)."""

    model_type = "fusion_qwen2"


FusionConfig = FusionConfigMixin
"""Common base of the FUSION config classes (use ``isinstance(cfg, FusionConfig)``)."""

CONFIG_CLASSES = {c.model_type: c for c in (FusionPhiConfig, FusionLlamaConfig, FusionQwen2Config)}


def read_tower_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The shape of a SigLIP tower from its folder (a vision-model config, or a full SigLIP config)."""
    with open(Path(folder) / "config.json", encoding="utf-8") as f:
        raw = json.load(f)
    raw = raw.get("vision_config", raw)
    return {k: raw[k] for k in _VISION_KEYS if k in raw}


class VisionTowerNotFoundError(FileNotFoundError):
    """The vision tower's shape cannot be determined from the checkpoint, a folder or the table."""


def resolve_vision_config(config, checkpoint_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Shape of the pretrained vision tower (its own config, L layers; FUSION keeps L - 1).

    Order: ``config.vision_config`` (written by our ``save_pretrained``); a folder named by
    ``mm_vision_tower`` (absolute, inside the checkpoint, beside it, or relative to the working
    directory); the built-in table of released towers. Anything else is an error naming what is missing.
    """
    if config.vision_config:
        return dict(config.vision_config)
    name = config.mm_vision_tower
    if not name:
        raise VisionTowerNotFoundError("config has neither `vision_config` nor `mm_vision_tower`")
    candidates = [Path(name)]
    if checkpoint_dir is not None and not Path(name).is_absolute():
        base = Path(checkpoint_dir)
        candidates = [base / name, base.parent / name, Path(name)]
    for folder in candidates:
        if (folder / "config.json").is_file():
            return read_tower_config(folder)
    if name in KNOWN_VISION_TOWERS:
        return dict(KNOWN_VISION_TOWERS[name])
    tried = ", ".join(str(c / "config.json") for c in candidates)
    raise VisionTowerNotFoundError(
        f"cannot determine the vision tower shape for mm_vision_tower={name!r}: none of [{tried}] exists "
        f"and it is not one of the built-in towers ({', '.join(KNOWN_VISION_TOWERS)})"
    )


def build_vision_config(config) -> SiglipVisionConfig:
    """SigLIP config of the tower as FUSION uses it: the pretrained tower minus its last layer."""
    vc = resolve_vision_config(config)
    vision = SiglipVisionConfig(**vc)
    vision.num_hidden_layers = vc["num_hidden_layers"] - 1
    vision.vision_use_head = False
    return vision
