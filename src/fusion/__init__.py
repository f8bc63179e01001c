"""FUSION: fully integrated vision-language models (Liu et al., 2025), on transformers."""

from transformers import AutoConfig, AutoModelForCausalLM

from .configuration_fusion import (
    CONFIG_CLASSES,
    FusionConfig,
    FusionLlamaConfig,
    FusionPhiConfig,
    FusionQwen2Config,
    VisionTowerNotFoundError,
)
from .modeling_fusion import (
    MODEL_CLASSES,
    FusionCausalLMOutput,
    FusionForCausalLM,
    FusionLlamaForCausalLM,
    FusionPhi3ForCausalLM,
    FusionQwen2ForCausalLM,
)

for _model_type, _config_class in CONFIG_CLASSES.items():
    AutoConfig.register(_model_type, _config_class, exist_ok=True)
    AutoModelForCausalLM.register(_config_class, MODEL_CLASSES[_model_type], exist_ok=True)

__all__ = [
    "FusionCausalLMOutput",
    "FusionConfig",
    "FusionForCausalLM",
    "FusionLlamaConfig",
    "FusionLlamaForCausalLM",
    "FusionPhi3ForCausalLM",
    "FusionPhiConfig",
    "FusionQwen2Config",
    "FusionQwen2ForCausalLM",
    "VisionTowerNotFoundError",
]
