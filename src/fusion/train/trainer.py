"""The training loop: small, explicit and config-driven, on accelerate (DDP, DeepSpeed, FSDP).

Data order is a pure function of (seed, epoch) and the global step, so a resumed run sees exactly
the batches an uninterrupted run would, and checkpoints restore model, optimizer, scheduler and RNG.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from transformers import get_scheduler

from ..modeling_fusion import FusionForCausalLM
from ..processing_fusion import FusionProcessor
from .config import TrainConfig
from .data import Collator, FusionDataset, StepBatchSampler, epoch_order, estimate_length, load_records

logger = logging.getLogger(__name__)

PROJECTOR_PREFIXES = ("model.mm_projector.", "model.aux_projector.", "model.vision_sampler_layers.")
VISION_PREFIX = "model.vision_tower."
STATE_FILE = "trainer_state.json"


class TrainingError(RuntimeError):
    """Training cannot go on: NaN/inf loss, a fully masked batch, too many bad samples."""


@dataclass
class RunState:
    step: int = 0
    samples_seen: int = 0
    samples_skipped: int = 0
    tokens: int = 0  # merged-sequence tokens trained on (all processes)
    skipped_ids: list[str] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)


def _component(name: str) -> str:
    if name.startswith(VISION_PREFIX):
        return "vision_tower"
    if name.startswith(PROJECTOR_PREFIXES):
        return "projectors"
    return "llm"


def _unused_parameters(model: FusionForCausalLM) -> set[str]:
    """Parameters the forward never touches: the tower's post_layernorm (FUSION reads hidden states)
    and interaction layers scheduled after a decoder layer that does not exist."""
    names = {n for n, _ in model.named_parameters() if ".post_layernorm." in n}
    used = set(range(len(model.config.interaction_layer_indices)))
    for k in range(len(model.model.vision_sampler_layers)):
        if k not in used:
            names |= {n for n, _ in model.named_parameters() if n.startswith(f"model.vision_sampler_layers.{k}.")}
    return names


def configure_trainable(model: FusionForCausalLM, config: TrainConfig) -> dict[str, list[torch.nn.Parameter]]:
    """Sets requires_grad per component and returns the parameter groups (one learning rate each)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wraps the model
    unused = _unused_parameters(base)
    frozen = {
        "vision_tower": config.freeze.vision_tower,
        "projectors": config.freeze.projectors,
        "llm": config.freeze.llm or config.lora.enabled,
    }
    groups: dict[str, list[torch.nn.Parameter]] = {"vision_tower": [], "projectors": [], "llm": []}
    for name, param in model.named_parameters():
        plain = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
        comp = _component(plain)
        is_lora = "lora_" in name
        trainable = plain not in unused and (is_lora or not frozen[comp])
        param.requires_grad_(trainable)
        if trainable:
            groups["llm" if is_lora else comp].append(param)
    return groups


def _build_accelerator(config: TrainConfig, accum: int) -> Accelerator:
    kwargs: dict[str, Any] = {"gradient_accumulation_steps": accum, "mixed_precision": config.mixed_precision}
    if not torch.cuda.is_available():  # CPU processes under torchrun: accelerate then uses gloo
        kwargs["cpu"] = True
    trackers = []
    for name in config.report_to:
        try:
            __import__({"tensorboard": "tensorboard", "wandb": "wandb"}.get(name, name))
        except ImportError:
            continue
        if name == "wandb" and not (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE")):
            continue
        trackers.append(name)
    if trackers:
        kwargs.update(log_with=trackers, project_dir=str(Path(config.output_dir) / "logs"))
    if config.engine == "deepspeed":
        from accelerate.utils import DeepSpeedPlugin

        if not config.deepspeed_config:
            raise TrainingError("engine: deepspeed needs deepspeed_config (e.g. the shipped zero2.json or zero3.json)")
        kwargs["deepspeed_plugin"] = DeepSpeedPlugin(
            hf_ds_config=config.deepspeed_config, gradient_accumulation_steps=accum
        )
    elif config.engine == "fsdp":
        from accelerate.utils import FullyShardedDataParallelPlugin

        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(
            auto_wrap_policy="transformer_based_wrap",
            transformer_cls_names_to_wrap=[
                "Phi3DecoderLayer",
                "LlamaDecoderLayer",
                "Qwen2DecoderLayer",
                "SiglipEncoderLayer",
                "InteractionBlock",
            ],
            state_dict_type="FULL_STATE_DICT",
        )
    else:
        kwargs["kwargs_handlers"] = [DistributedDataParallelKwargs(find_unused_parameters=False)]
    return Accelerator(**kwargs)


def _checkpoints(output_dir: Path) -> list[Path]:
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def _save(
    accelerator: Accelerator,
    model,
    processor: FusionProcessor,
    config: TrainConfig,
    state: RunState,
    target: Path,
    with_state: bool,
) -> None:
    """Writes a checkpoint into a temporary folder and renames it into place (atomic on one filesystem)."""
    tmp = target.parent / f".tmp-{target.name}"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    if with_state:
        accelerator.save_state(str(tmp / "state"))
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        if hasattr(unwrapped, "merge_and_unload"):  # LoRA: adapter + non-LoRA trainables + merged weights
            unwrapped.save_pretrained(tmp / "adapter")
            trainables = {
                n: p.detach().cpu() for n, p in unwrapped.named_parameters() if p.requires_grad and "lora_" not in n
            }
            torch.save(trainables, tmp / "non_lora_trainables.bin")
            merged = unwrapped.merge_and_unload() if not with_state else None
            if merged is not None:
                merged.save_pretrained(tmp)
        else:
            unwrapped.save_pretrained(tmp, state_dict=state_dict)
        processor.save_pretrained(tmp)
        (tmp / STATE_FILE).write_text(json.dumps({**state.__dict__, "config": config.to_dict()}, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    accelerator.wait_for_everyone()


def _prune(output_dir: Path, keep: int | None) -> None:
    if keep is None:
        return
    for old in _checkpoints(output_dir)[:-keep] if keep > 0 else _checkpoints(output_dir):
        shutil.rmtree(old)


def _apply_lora(model, config: TrainConfig):
    from peft import LoraConfig, get_peft_model

    # LoRA on the decoder only; the vision side stays fully trainable unless frozen.
    pattern = r"model\.layers\.\d+\..*(" + "|".join(config.lora.target_modules) + r")$"
    peft_config = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=pattern,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config)


def train(config: TrainConfig) -> dict[str, Any]:
    """Runs one stage; returns the run summary (also written to ``output_dir/run_summary.json``)."""
    if not config.model or not config.data:
        raise TrainingError("`model` (checkpoint folder) and `data` are required")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if config.global_batch_size % (config.micro_batch_size * world):
        raise TrainingError(
            f"global_batch_size {config.global_batch_size} is not a multiple of micro_batch_size x processes "
            f"({config.micro_batch_size} x {world})"
        )
    accum = config.global_batch_size // (config.micro_batch_size * world)
    accelerator = _build_accelerator(config, accum)
    set_seed(config.seed)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    model = FusionForCausalLM.from_pretrained(config.model, dtype=torch.float32)
    processor = FusionProcessor.from_pretrained(config.model)
    model.config.tokenizer_model_max_length = config.max_length
    model.config.tokenizer_padding_side = "right"
    model.config.use_cache = False
    if config.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.lora.enabled:
        model = _apply_lora(model, config)
    groups = configure_trainable(model, config)
    lrs = {"vision_tower": config.vision_tower_lr, "projectors": config.projector_lr_value, "llm": config.lr}
    param_groups = [
        {"params": ps, "lr": lrs[name], "weight_decay": config.weight_decay, "name": name}
        for name, ps in groups.items()
        if ps
    ]
    if not param_groups:
        raise TrainingError("every parameter is frozen: nothing to train")
    optimizer = torch.optim.AdamW(param_groups, lr=config.lr, weight_decay=config.weight_decay)

    records = load_records(config.data, seed=config.seed)
    dataset = FusionDataset(records, processor, config.image_folder)
    lengths = [estimate_length(r) for r in records]
    modalities = [bool(r.get("image")) for r in records]
    steps_per_epoch = len(records) // config.global_batch_size
    if steps_per_epoch == 0:
        raise TrainingError(f"{len(records)} samples are fewer than one global batch ({config.global_batch_size})")
    total_steps = config.max_steps or math.ceil(config.num_epochs * steps_per_epoch)
    scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer,
        num_warmup_steps=math.ceil(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)

    state = RunState()
    if config.resume and _checkpoints(output_dir):
        last = _checkpoints(output_dir)[-1]
        accelerator.load_state(str(last / "state"))
        saved = json.loads((last / STATE_FILE).read_text())
        state = RunState(**{k: v for k, v in saved.items() if k in RunState.__dataclass_fields__})
        logger.info("resumed from %s at step %d", last, state.step)
    if accelerator.trackers:
        accelerator.init_trackers(config.stage, config={k: str(v) for k, v in config.to_dict().items()})

    progress = None
    if accelerator.is_main_process:
        from tqdm.auto import tqdm

        progress = tqdm(total=total_steps, initial=state.step, desc=config.stage, unit="step")
    collate = Collator(processor)
    sample_log = None
    if config.log_sample_ids:  # which samples each process trained on, step by step
        sample_log = open(output_dir / f"samples.rank{accelerator.process_index}.tsv", "a", encoding="utf-8")
    started = time.perf_counter()
    start_samples, start_tokens = state.samples_seen, state.tokens
    model.train()
    while state.step < total_steps:
        epoch, start_in_epoch = divmod(state.step, steps_per_epoch)
        order = epoch_order(lengths, modalities, config.global_batch_size, config.seed, epoch, config.group_by_length)
        sampler = StepBatchSampler(
            order,
            config.global_batch_size,
            config.micro_batch_size,
            accelerator.num_processes,
            accelerator.process_index,
            start_in_epoch,
        )
        # Own generator: creating a loader must not consume the global RNG (which drives q), or a
        # resumed run would diverge from an uninterrupted one.
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=config.num_workers,
            generator=torch.Generator().manual_seed(config.seed + epoch),
        )
        batches = iter(loader)
        for _ in range(start_in_epoch, steps_per_epoch):
            if state.step >= total_steps:
                break
            metrics = _train_step(accelerator, model, optimizer, scheduler, batches, accum, config, state, sample_log)
            state.step += 1
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{metrics['loss']:.4f}", skipped=state.samples_skipped)
            if state.step % config.logging_steps == 0:
                accelerator.log(metrics, step=state.step)
                state.history.append({"step": state.step, **metrics})
            if config.save_steps and state.step % config.save_steps == 0 and state.step < total_steps:
                _save(accelerator, model, processor, config, state, output_dir / f"checkpoint-{state.step}", True)
                if accelerator.is_main_process:
                    _prune(output_dir, config.save_total_limit)
    elapsed = time.perf_counter() - started
    if sample_log is not None:
        sample_log.close()
    if progress is not None:
        progress.close()
    _save(accelerator, model, processor, config, state, output_dir / f"checkpoint-{state.step}", True)
    # The stage's model lives at output_dir itself, so the next stage takes output_dir as `model`.
    staging = output_dir / "final"
    _save(accelerator, model, processor, config, state, staging, False)
    if accelerator.is_main_process:
        for item in staging.iterdir():
            os.replace(item, output_dir / item.name)
        staging.rmdir()
    accelerator.wait_for_everyone()
    summary = {
        "stage": config.stage,
        "steps": state.step,
        "samples_seen": state.samples_seen,
        "samples_skipped": state.samples_skipped,
        "skipped_ids": state.skipped_ids[:1000],
        "final_loss": state.history[-1]["loss"] if state.history else None,
        "seconds": elapsed,
        "samples_per_second": (state.samples_seen - start_samples) / elapsed if elapsed > 0 else None,
        "tokens_per_second": (state.tokens - start_tokens) / elapsed if elapsed > 0 else None,
        "peak_memory_mb": _peak_memory_mb(),
        "processes": accelerator.num_processes,
        "model_dir": str(output_dir),
    }
    if accelerator.is_main_process:
        _prune(output_dir, config.save_total_limit)
        (output_dir / "run_summary.json").write_text(json.dumps(summary, indent=2))
    accelerator.end_training()
    return summary


def _peak_memory_mb() -> float:
    """Peak GPU memory allocated by torch, or the process's peak resident memory on CPU."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _train_step(
    accelerator: Accelerator,
    model,
    optimizer,
    scheduler,
    batches,
    accum: int,
    config: TrainConfig,
    state: RunState,
    sample_log=None,
) -> dict[str, float]:
    """One optimizer step over ``accum`` micro-batches; returns metrics averaged over processes."""
    device = accelerator.device
    sums = torch.zeros(7, device=device)  # loss, ce, text, vision, good samples, bad samples, tokens
    last_inputs = None
    for _ in range(accum):
        batch = next(batches)
        if sample_log is not None:
            sample_log.write("".join(f"{state.step + 1}\t{sid}\n" for sid in batch["ids"]))
        for bad in batch["bad"]:
            logger.warning("skipping sample %s: %s", bad.id, bad.reason)
            state.skipped_ids.append(bad.id)
        inputs = batch.get("inputs")
        scale = 1.0
        if inputs is None:  # every sample of this micro-batch was bad: keep ranks in step, add nothing
            if last_inputs is None:
                raise TrainingError(
                    f"step {state.step + 1}: a micro-batch had only bad samples ({[b.id for b in batch['bad']]})"
                )
            inputs, scale = last_inputs, 0.0
        inputs = {k: v.to(device) for k, v in inputs.items()}
        last_inputs = inputs
        with accelerator.accumulate(model), accelerator.autocast():
            out = model(
                **inputs,
                query_len=config.query_len,
                text_only_vision="reference" if config.reference_exact_loss else "shared",
            )
            problems = torch.tensor(
                [
                    0.0 if out.ce_loss is not None else 1.0,
                    0.0 if out.loss is not None and torch.isfinite(out.loss) else 1.0,
                ],
                device=device,
            )
            problems = accelerator.reduce(problems, reduction="sum")
            if problems[0] > 0:
                raise TrainingError(f"step {state.step + 1}: a batch has every label masked (ids {batch['ids']})")
            if problems[1] > 0:
                raise TrainingError(f"step {state.step + 1}: loss is NaN or infinite (ids {batch['ids']})")
            accelerator.backward(out.loss * scale)
            if accelerator.sync_gradients and config.max_grad_norm:
                accelerator.clip_grad_norm_(
                    [p for g in optimizer.param_groups for p in g["params"]], config.max_grad_norm
                )
            optimizer.step()
            if accelerator.sync_gradients:
                scheduler.step()
            optimizer.zero_grad()
        parts = [out.loss, out.ce_loss, out.text_loss, out.vision_loss]
        vals = [float(p.detach()) * scale if p is not None else 0.0 for p in parts]
        n_good = len(batch["ids"]) if scale else 0
        tokens = float(out.attention_mask.sum()) if scale else 0.0
        sums += torch.tensor([*vals, n_good, len(batch["bad"]), tokens], device=device)
    totals = accelerator.reduce(sums, reduction="sum")
    good, bad = int(totals[4]), int(totals[5])
    state.samples_seen += good + bad
    state.samples_skipped += bad
    state.tokens += int(totals[6])
    if (
        state.samples_seen >= config.min_samples_before_skip_check
        and state.samples_skipped > config.max_skip_rate * state.samples_seen
    ):
        raise TrainingError(
            f"{state.samples_skipped} of {state.samples_seen} samples were bad, more than max_skip_rate="
            f"{config.max_skip_rate}; run `fusion data check` on the data (first ids: {state.skipped_ids[:5]})"
        )
    n = accum * accelerator.num_processes
    metrics = {
        "loss": float(totals[0]) / n,
        "ce_loss": float(totals[1]) / n,
        "text_loss": float(totals[2]) / n,
        "vision_loss": float(totals[3]) / n,
        "samples_skipped": float(state.samples_skipped),
    }
    for group in optimizer.param_groups:
        metrics[f"lr/{group.get('name', 'group')}"] = group["lr"]
    return metrics
