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
from .image_processing_fusion import FusionImageProcessor
from .modeling_fusion import (
    MODEL_CLASSES,
    FusionCausalLMOutput,
    FusionForCausalLM,
    FusionLlamaForCausalLM,
    FusionPhi3ForCausalLM,
    FusionQwen2ForCausalLM,
)
from .processing_fusion import FusionProcessor

for _model_type, _config_class in CONFIG_CLASSES.items():
    AutoConfig.register(_model_type, _config_class, exist_ok=True)
    AutoModelForCausalLM.register(_config_class, MODEL_CLASSES[_model_type], exist_ok=True)

__all__ = [
    "MODEL_CLASSES",
    "FusionCausalLMOutput",
    "FusionConfig",
    "FusionForCausalLM",
    "FusionImageProcessor",
    "FusionLlamaConfig",
    "FusionLlamaForCausalLM",
    "FusionPhi3ForCausalLM",
    "FusionPhiConfig",
    "FusionProcessor",
    "FusionQwen2Config",
    "FusionQwen2ForCausalLM",
    "VisionTowerNotFoundError",
]
