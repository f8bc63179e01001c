"""Training: the three-stage FUSION recipe (stage 1, 1.5, 2) on accelerate (DDP, DeepSpeed, FSDP)."""

from .config import TrainConfig, load_config
from .trainer import TrainingError, train

__all__ = ["TrainConfig", "TrainingError", "load_config", "train"]
