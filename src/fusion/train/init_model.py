"""`fusion init`: a new FUSION model from a base LLM folder and a SigLIP / SigLIP2 tower folder."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from ..configuration_fusion import CONFIG_CLASSES, TEMPLATE_BY_MODEL_TYPE, read_tower_config
from ..constants import VISION_END, VISION_START
from ..image_processing_fusion import FusionImageProcessor
from ..modeling_fusion import FusionForCausalLM
from ..processing_fusion import FusionProcessor

_FAMILIES = {"phi3": "fusion_phi", "llama": "fusion_llama", "qwen2": "fusion_qwen2"}


def _tower_weights(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in vision tower folder {folder}")
    weights: dict[str, torch.Tensor] = {}
    for f in files:
        weights.update(load_file(f))
    if any("vision_model." in k for k in weights):  # SiglipModel / reference-style names
        return {k.split("vision_model.", 1)[1]: v for k, v in weights.items() if "vision_model." in k}
    return weights


def init_fusion_model(
    llm: str | Path,
    vision_tower: str | Path,
    out: str | Path,
    *,
    chat_template: str | None = None,
    projector_type: str = "mlp2x_gelu",
    query_len: str = "4,16,36,64,144",
    window_size: int = 3,
    num_interaction_layers: int = 10,
    interaction_start: int = 0,
    interaction_stride: int = 3,
) -> Path:
    """Builds the model the paper's stage 1 starts from and saves it (with its processor) to ``out``.

    The LLM weights and the tower weights (minus the tower's last layer, which FUSION drops) are
    copied in; projectors and interaction layers are freshly initialized; the tokenizer gains
    ``<vision_start>`` / ``<vision_end>`` and the embeddings grow to match (new rows = mean row).
    """
    llm, vision_tower, out = Path(llm), Path(vision_tower), Path(out)
    llm_config = AutoConfig.from_pretrained(llm, local_files_only=True)
    if llm_config.model_type not in _FAMILIES:
        raise ValueError(f"unsupported LLM type {llm_config.model_type!r} (supported: {', '.join(_FAMILIES)})")
    vision = read_tower_config(vision_tower)
    tokenizer = AutoTokenizer.from_pretrained(llm, local_files_only=True)
    tokenizer.add_special_tokens({"additional_special_tokens": [VISION_START, VISION_END]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    model_type = _FAMILIES[llm_config.model_type]
    values = {
        k: v
        for k, v in llm_config.to_dict().items()
        if k not in ("model_type", "architectures", "transformers_version")
    }
    values.update(
        vocab_size=max(len(tokenizer), llm_config.vocab_size),
        mm_vision_tower=str(vision_tower),
        mm_hidden_size=vision["hidden_size"],
        mm_projector_type=projector_type,
        query_len=query_len,
        window_size=window_size,
        num_of_vision_sampler_layers=num_interaction_layers,
        start_of_vision_sampler_layers=interaction_start,
        stride_of_vision_sampler_layers=interaction_stride,
        vision_config=vision,
        chat_template=chat_template or TEMPLATE_BY_MODEL_TYPE[model_type],
        pad_token_id=tokenizer.pad_token_id,
    )
    config = CONFIG_CLASSES[model_type](**values)
    model = FusionForCausalLM(config)

    base = AutoModelForCausalLM.from_pretrained(llm, dtype=torch.float32, local_files_only=True)
    state = base.state_dict()
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        if key in state and state[key].shape[0] < config.vocab_size:
            old = state[key]
            extra = old.mean(dim=0, keepdim=True).expand(config.vocab_size - old.shape[0], -1)
            state[key] = torch.cat([old, extra])
    missing, unexpected = model.load_state_dict(state, strict=False)
    llm_missing = [
        k
        for k in missing
        if not k.startswith(
            ("model.vision_tower.", "model.mm_projector", "model.aux_projector", "model.vision_sampler_layers")
        )
    ]
    if llm_missing and not (llm_missing == ["lm_head.weight"] and config.tie_word_embeddings):
        raise ValueError(f"LLM weights missing for {llm_missing[:5]}")
    if unexpected:
        raise ValueError(f"unexpected LLM weights {unexpected[:5]}")

    tower = model.model.vision_tower.vision_tower.vision_model
    kept = tower.config.num_hidden_layers
    weights = {
        k: v
        for k, v in _tower_weights(vision_tower).items()
        if not k.startswith("head.") and not (k.startswith("encoder.layers.") and int(k.split(".")[2]) >= kept)
    }
    missing, unexpected = tower.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"vision tower weights do not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )

    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    processor = FusionProcessor(
        FusionImageProcessor(image_size=vision["image_size"]), tokenizer, config.chat_template_name
    )
    processor.save_pretrained(out)
    return out
