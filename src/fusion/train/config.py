"""Training configuration: one YAML file per stage, overridable from the command line."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A training config is malformed (unknown key, wrong type, missing value)."""


@dataclass
class FreezeConfig:
    vision_tower: bool = False
    projectors: bool = False  # mm_projector, aux_projector and the interaction layers
    llm: bool = False


@dataclass
class LoraConfig:
    """LoRA / QLoRA on the LLM through peft; the non-LoRA trainables are saved in every checkpoint."""

    enabled: bool = False
    r: int = 64
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "qkv_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
            "gate_up_proj",
        ]
    )
    quantize_4bit: bool = False  # QLoRA (needs bitsandbytes and a GPU)


@dataclass
class TrainConfig:
    """One training stage. Paper settings live in the shipped recipes (``fusion/train/recipes``)."""

    model: str | None = None  # checkpoint folder: `fusion init` output or the previous stage's output_dir
    data: str | None = None  # LLaVA JSON / JSONL, or a YAML mixture
    image_folder: str | None = None
    output_dir: str = "outputs/stage"
    stage: str = "stage"

    num_epochs: float = 1.0
    max_steps: int | None = None  # overrides num_epochs when set
    global_batch_size: int = 128
    micro_batch_size: int = 4  # per process
    lr: float = 2e-5  # LLM
    projector_lr: float | None = None  # projectors + interaction layers (default: lr)
    vision_tower_lr: float = 2e-6
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    max_length: int = 4096  # merged-sequence truncation (tokenizer_model_max_length)
    mixed_precision: str = "bf16"  # "no" | "bf16" | "fp16"
    gradient_checkpointing: bool = True
    query_len: int | None = None  # None: random from the model's query_len on every step (as the paper)
    # False: text-only samples share one zero-image encoding (same logits; the vision mapping loss
    # covers real images only). True: one zero image per text-only sample, the reference's exact loss.
    reference_exact_loss: bool = False
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)

    seed: int = 42
    group_by_length: bool = True  # length- and modality-grouped batches
    num_workers: int = 2
    max_skip_rate: float = 0.01  # stop when more than this fraction of samples had to be skipped
    min_samples_before_skip_check: int = 100
    save_steps: int = 500
    save_total_limit: int | None = 2
    logging_steps: int = 1
    report_to: list[str] = field(default_factory=lambda: ["tensorboard", "wandb"])  # those installed are used
    engine: str = "ddp"  # "ddp" | "deepspeed" | "fsdp"
    deepspeed_config: str | None = None  # JSON file (the shipped zero2.json / zero3.json)
    resume: bool = False
    log_sample_ids: bool = False  # write output_dir/samples.rank{R}.tsv (step, sample id)

    @property
    def projector_lr_value(self) -> float:
        return self.projector_lr if self.projector_lr is not None else self.lr

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Converts a YAML / command-line value to the annotated type, or raises ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, prefix=f"{key}.")
    if origin is list:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(args[0], v, key) for v in value]
    if tp is bool:
        if isinstance(value, str):
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is str and isinstance(value, bool):  # YAML 1.1 reads `no` / `yes` as booleans
        return "yes" if value else "no"
    if tp in (int, float, str):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return tp(value)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}") from err
    return value


def _build(cls: type, values: dict[str, Any], prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(prefix + k for k in sorted(unknown))}")
    return cls(**{k: _coerce(hints[k], v, prefix + k) for k, v in values.items()})


def _set_dotted(values: dict[str, Any], dotted: str, value: Any) -> None:
    node = values
    *parents, last = dotted.replace("-", "_").split(".")
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {p} is not a mapping")
    node[last] = value  # strings are converted to the field's type by _coerce


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Reads a stage YAML (paths in it are relative to the YAML file) and applies dotted overrides."""
    values: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"cannot read config {path}: {err}") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"config {path} is not valid YAML: {err}") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping of keys to values")
        values = loaded or {}
        base = path.parent
    for key in ("model", "data", "image_folder", "output_dir", "deepspeed_config"):
        if isinstance(values.get(key), str) and not Path(values[key]).is_absolute():
            values[key] = str(base / values[key])
    for key, value in (overrides or {}).items():
        _set_dotted(values, key, value)
    config = _build(TrainConfig, values)
    if config.engine not in ("ddp", "deepspeed", "fsdp"):
        raise ConfigError(f"engine must be ddp, deepspeed or fsdp, got {config.engine!r}")
    if config.mixed_precision not in ("no", "bf16", "fp16"):
        raise ConfigError(f"mixed_precision must be no, bf16 or fp16, got {config.mixed_precision!r}")
    return config
