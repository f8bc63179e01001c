"""Stage 0: a language-only warm-up of a fresh FUSION model's decoder on text conversations.

In our runs a decoder trained from scratch on image data alone did not learn to look up an option's
letter: the tiny model's multiple-choice answers stayed at chance however long stages 1-2 ran, while a
plain decoder trained on the same questions in text form ("Scene: <caption>" + options) learned the
lookup within two thousand steps and kept it through the visual stages (README, "Tiny model").
Stage 0 trains that plain decoder: the checkpoint's own LLM class (``LlamaForCausalLM`` for
``fusion_llama``, ...) and chat format, with the latent-token markers dropped, then writes it into the
FUSION checkpoint. The vision tower, projectors and interaction layers are left as they were. The
decoder starts from ``seed`` alone, so models that differ only on the vision side (the ablations) get
the same stage 0.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from ..constants import IGNORE_INDEX
from ..modeling_fusion import FusionForCausalLM
from ..processing_fusion import ConversationError, FusionProcessor
from .data import DataError, epoch_order, load_records
from .trainer import TrainingError

STATE_FILE = "warmup_state.json"


@dataclass
class WarmupConfig:
    steps: int = 2000
    lr: float = 5e-4
    batch_size: int = 32
    weight_decay: float = 0.0
    seed: int = 0
    log_every: int = 100
    # Length-grouped batches cut padding (about 20% of the tiny recipe's stage-0 time) but make each
    # batch mostly one kind of question (lengths follow the category): a fresh 4500-step run with them
    # scored 65.9% on text turns against 69.7% for 3000 mixed steps (one run each). Off unless asked.
    group_by_length: bool = False
    # "answers": the loss is on the answer tokens alone, as in stages 1-2. "all": on every token, as an
    # LLM is pretrained; the questions and options repeat the caption's words, so next-token prediction
    # rewards looking back at the caption on most tokens instead of on two or three answer letters.
    # Measured on the tiny recipe (one run): after 1500 steps "all" answered the open "What shape is on
    # the left?" 80% of the time but multiple choice stayed at chance (text turns 44.8%), likely as
    # the answers' share of the gradient shrinks. Off unless asked.
    loss_on: Literal["answers", "all"] = "answers"


def plain_decoder_class(model: FusionForCausalLM) -> type[PreTrainedModel]:
    """The transformers causal-LM class a FUSION model extends (its parameter names are the same)."""
    for cls in type(model).__mro__:
        if cls.__module__.startswith("transformers.models.") and cls.__name__.endswith("ForCausalLM"):
            return cls
    raise TypeError(f"{type(model).__name__} does not extend a transformers causal LM")


def decoder_config(model: FusionForCausalLM):
    """The plain LLM config of a FUSION model: its config without the vision fields."""
    cls = plain_decoder_class(model).config_class
    defaults = cls().to_dict()
    skip = ("model_type", "architectures", "transformers_version")
    return cls(**{k: v for k, v in model.config.to_dict().items() if k in defaults and k not in skip})


def fresh_decoder(model: FusionForCausalLM, seed: int) -> PreTrainedModel:
    """A random decoder with the checkpoint's LLM config, from ``seed`` alone (the global RNG is left as
    it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return plain_decoder_class(model)(decoder_config(model)).float()


def copy_decoder(source: PreTrainedModel, target: FusionForCausalLM) -> int:
    """Copies the decoder (the plain causal LM's tensors) of a FUSION model, or a plain decoder, into a
    FUSION model with the same LLM config, e.g. a shared stage 0 into an ablation's fresh model; returns
    how many tensors it copied."""
    a, b = decoder_config(source).to_dict(), decoder_config(target).to_dict()
    differ = sorted(
        k for k in a.keys() | b.keys() if a.get(k) != b.get(k) and not k.startswith("_") and "dtype" not in k
    )
    if differ:
        raise ValueError(f"the decoders differ in {', '.join(differ)}")
    with torch.device("meta"):
        names = set(plain_decoder_class(target)(decoder_config(target)).state_dict())
    state = {k: v for k, v in source.state_dict().items() if k in names}
    if len(state) != len(names):
        raise ValueError(f"decoder tensors missing from the source: {sorted(names - set(state))[:5]}")
    target.load_state_dict(state, strict=False)
    return len(state)


def encode_text_records(
    records: Sequence[dict], processor: FusionProcessor, max_length: int
) -> list[dict[str, torch.Tensor]]:
    """Encoded text-only records (``processor.collate`` batches them), latent markers dropped; a record
    with an image, one that cannot be encoded or one longer than ``max_length`` is an error naming it
    (stage 0 is text only, and nothing is skipped or cut)."""
    encoded = []
    for n, record in enumerate(records):
        name = record.get("id", f"#{n}") if isinstance(record, dict) else f"#{n}"
        if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
            raise DataError(f"sample {name}: needs a `conversations` list")
        if record.get("image"):
            raise DataError(f"sample {name} has an image: stage 0 trains on text-only samples")
        try:
            sample = processor.encode_conversation(record["conversations"], has_image=False)
        except (ConversationError, KeyError, TypeError, ValueError) as err:
            raise DataError(f"sample {name}: {err}") from err
        keep = sample["input_ids"] >= 0  # the -300 latent markers: no latents in a plain decoder
        if int(keep.sum()) > max_length:
            raise DataError(f"sample {name} has {int(keep.sum())} tokens, more than the decoder's {max_length}")
        labels = sample["labels"][keep]
        labels = torch.where(labels < 0, IGNORE_INDEX, labels)  # -400 instruction marks are FUSION's only
        if not (labels != IGNORE_INDEX).any():
            raise DataError(f"sample {name} has no answer to learn")
        encoded.append(
            {"input_ids": sample["input_ids"][keep], "labels": labels, "instruct_ids": torch.zeros(1, dtype=torch.long)}
        )
    return encoded


def warm_up(
    model_dir: str | Path, data: Sequence[str | Path], out: str | Path, config: WarmupConfig | None = None
) -> dict:
    """Trains a fresh decoder on ``data`` (text-only LLaVA-format files) and writes ``model_dir`` with it
    to ``out``. Samples are drawn in a fresh seeded order per epoch (length-grouped if the config
    asks); the learning rate is constant (the lookup this stage exists for forms late, and a decaying
    rate stalls it).

    Under torchrun each of the N processes takes a contiguous 1/N of every batch, and the loss is summed
    over the tokens and divided by the whole batch's answer-token count: the step is the one a single
    process takes (the same samples, order and loss), up to the order of floating-point sums."""
    config = config or WarmupConfig()
    if config.steps < 1 or config.batch_size < 1:
        raise ValueError("steps and batch_size must be positive")
    if config.loss_on not in ("answers", "all"):
        raise ValueError(f"loss_on must be 'answers' or 'all', got {config.loss_on!r}")
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    world, rank = accelerator.num_processes, accelerator.process_index
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not a multiple of the {world} processes")
    per_rank = config.batch_size // world
    processor = FusionProcessor.from_pretrained(model_dir)
    model = FusionForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    records = [r for path in data for r in load_records(path)]
    if not records:
        raise DataError("no samples in " + ", ".join(str(p) for p in data))
    decoder = fresh_decoder(model, config.seed).train()
    samples = encode_text_records(records, processor, decoder.config.max_position_embeddings)
    if config.loss_on == "all":
        samples = [{**s, "labels": s["input_ids"].clone()} for s in samples]
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    decoder, optimizer = accelerator.prepare(decoder, optimizer)
    device = accelerator.device
    lengths = [len(s["input_ids"]) for s in samples]
    # Answer tokens per sample (labels shift by one inside the loss), counted once: every process divides
    # its token sum by the whole batch's count, so the processes' gradients add up to the batch's mean.
    answer_tokens = [int((s["labels"][1:] != IGNORE_INDEX).sum()) for s in samples]
    text_only = [False] * len(samples)
    generator = torch.Generator().manual_seed(config.seed)
    order: list[int] = []
    epoch = 0
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    progress = tqdm(
        range(1, config.steps + 1), desc="stage 0 (text)", unit="step", disable=not accelerator.is_main_process
    )
    for step in progress:
        if len(order) < config.batch_size:
            if config.group_by_length:
                order += epoch_order(lengths, text_only, config.batch_size, config.seed, epoch, True)
                epoch += 1
            else:  # the order the shipped tiny model was trained with
                order += torch.randperm(len(samples), generator=generator).tolist()
        picked, order = order[: config.batch_size], order[config.batch_size :]
        mine = [samples[i] for i in picked[rank * per_rank : (rank + 1) * per_rank]]
        count = torch.tensor(float(sum(answer_tokens[i] for i in picked)), device=device)
        batch = {k: v.to(device) for k, v in processor.collate(mine).items()}
        loss = decoder(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            labels=batch["labels"],
            num_items_in_batch=count,
        ).loss
        total = accelerator.reduce(loss.detach(), reduction="sum").item()  # the whole batch's mean
        if not math.isfinite(total):
            raise TrainingError(f"stage 0: loss is {total} at step {step}")
        accelerator.backward(loss * world)  # DDP averages over the processes; the sum is wanted
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % config.log_every == 0 or step == config.steps:
            history.append({"step": step, "loss": round(total, 4)})
            progress.set_postfix(loss=f"{total:.3f}")
    accelerator.wait_for_everyone()
    copied = copy_decoder(accelerator.unwrap_model(decoder).cpu(), model)
    out = Path(out)
    summary = {
        "steps": config.steps,
        "samples": len(samples),
        "final_loss": history[-1]["loss"],
        "seconds": round(time.perf_counter() - start, 1),
        "processes": world,
        "config": vars(config),
        "history": history,
        "untouched_parameters": len(model.state_dict()) - copied,
    }
    if accelerator.is_main_process:
        model.save_pretrained(out)
        processor.save_pretrained(out)
        (out / STATE_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    accelerator.wait_for_everyone()
    return summary
