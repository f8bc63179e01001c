"""Training data: LLaVA-format JSON/JSONL, YAML mixtures, lazy samples, grouped deterministic order.

Bad samples (missing or unreadable images, malformed or unalignable conversations) are never
replaced: they come back as :class:`BadSample`, are counted and reported with their ids.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from ..image_processing_fusion import ImageLoadError, load_image
from ..processing_fusion import ConversationError, FusionProcessor


class DataError(ValueError):
    """A data file or mixture is malformed."""


@dataclass
class BadSample:
    id: str
    reason: str


def _read_json_records(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from err
    if path.suffix == ".jsonl":
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{n}: not valid JSON: {err.msg}") from err
    else:
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from err
        if not isinstance(records, list):
            raise DataError(f"{path}: expected a JSON list of samples")
    for n, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise DataError(f"{path}: sample {n} is not an object")
        rec.setdefault("id", f"{path.stem}:{n}")
        rec["id"] = str(rec["id"])
    return records


_STRATEGY = re.compile(r"^(all|first:(\d+)|end:(\d+)|random:(\d+)|random:(\d+(?:\.\d+)?)%)$")


def apply_sampling(records: list[dict], strategy: str, seed: int) -> list[dict]:
    """all | first:N | end:N | random:N | random:P% (random draws are seeded and order-preserving)."""
    match = _STRATEGY.match(strategy.strip())
    if match is None:
        raise DataError(f"unknown sampling_strategy {strategy!r} (all, first:N, end:N, random:N, random:P%)")
    if match.group(1) == "all":
        return list(records)
    if match.group(2):
        return records[: int(match.group(2))]
    if match.group(3):
        return records[-int(match.group(3)) :] if int(match.group(3)) else []
    n = int(match.group(4)) if match.group(4) else math.ceil(len(records) * float(match.group(5)) / 100)
    picked = sorted(random.Random(seed).sample(range(len(records)), min(n, len(records))))
    return [records[i] for i in picked]


def load_records(path: str | Path, seed: int = 0) -> list[dict[str, Any]]:
    """Samples of a JSON / JSONL file or of a YAML mixture (`datasets: [{json_path, sampling_strategy}]`,
    paths relative to the YAML file)."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml"):
        return _read_json_records(path)
    try:
        mixture = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise DataError(f"cannot read mixture {path}: {err}") from err
    if not isinstance(mixture, dict) or not isinstance(mixture.get("datasets"), list):
        raise DataError(f"{path}: a mixture needs a `datasets:` list")
    records: list[dict[str, Any]] = []
    for n, entry in enumerate(mixture["datasets"]):
        if not isinstance(entry, dict) or "json_path" not in entry:
            raise DataError(f"{path}: datasets[{n}] needs a json_path")
        sub = Path(entry["json_path"])
        sub = sub if sub.is_absolute() else path.parent / sub
        picked = apply_sampling(_read_json_records(sub), str(entry.get("sampling_strategy", "all")), seed + n)
        records.extend(picked)
    return records


def estimate_length(record: dict[str, Any]) -> int:
    """Cheap length proxy for grouping (characters / 4), without tokenizing."""
    convs = record.get("conversations") or []
    return sum(len(str(t.get("value", ""))) for t in convs if isinstance(t, dict)) // 4


class FusionDataset(torch.utils.data.Dataset):
    """Lazily encodes samples; images are read from `image_folder` (or absolute paths)."""

    def __init__(self, records: Sequence[dict[str, Any]], processor: FusionProcessor, image_folder: str | None):
        self.records = list(records)
        self.processor = processor
        self.image_folder = Path(image_folder) if image_folder else None

    def __len__(self) -> int:
        return len(self.records)

    def has_image(self, index: int) -> bool:
        return bool(self.records[index].get("image"))

    def image_path(self, record: dict[str, Any]) -> Path:
        path = Path(record["image"])
        if not path.is_absolute() and self.image_folder is not None:
            path = self.image_folder / path
        return path

    def __getitem__(self, index: int) -> dict[str, Any] | BadSample:
        record = self.records[index]
        sid = record["id"]
        convs = record.get("conversations")
        if not isinstance(convs, list):
            return BadSample(sid, "missing or malformed `conversations`")
        image = record.get("image")
        if image is not None and not isinstance(image, str):
            return BadSample(sid, "`image` must be a single path")
        try:
            sample: dict[str, Any] = dict(self.processor.encode_conversation(convs, has_image=bool(image)))
        except ConversationError as err:
            return BadSample(sid, f"conversation: {err}")
        if image:
            try:
                pil = load_image(self.image_path(record))
            except ImageLoadError as err:
                return BadSample(sid, f"image: {err}")
            sample["pixel_values"] = self.processor.image_processor.process_one(pil)
        sample["id"] = sid
        return sample


def epoch_order(
    lengths: Sequence[int], modalities: Sequence[bool], global_batch: int, seed: int, epoch: int, group_by_length: bool
) -> list[int]:
    """Deterministic order of sample indices for one epoch.

    With grouping, samples are shuffled, cut into mega-batches of 8 global batches, sorted inside by
    (modality, length) so a batch holds similar lengths and mostly one modality, then the global
    batches are shuffled. The same (seed, epoch) always gives the same order, which makes resuming exact.
    """
    gen = torch.Generator().manual_seed(seed + epoch)
    perm = torch.randperm(len(lengths), generator=gen).tolist()
    if not group_by_length:
        return perm
    mega = global_batch * 8
    ordered: list[int] = []
    for start in range(0, len(perm), mega):
        chunk = sorted(perm[start : start + mega], key=lambda i: (modalities[i], -lengths[i]))
        ordered.extend(chunk)
    batches = [ordered[i : i + global_batch] for i in range(0, len(ordered), global_batch)]
    shuffle = torch.randperm(len(batches), generator=gen).tolist()
    return [i for b in shuffle for i in batches[b]]


class StepBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Micro-batches of this rank, global step by global step, starting at ``start_step``.

    Global batch k of the epoch order is split into (accumulation x world) micro-batches; rank r
    takes micro-batch a*world + r for accumulation step a, so ranks see different samples.
    """

    def __init__(
        self, order: Sequence[int], global_batch: int, micro_batch: int, world_size: int, rank: int, start_step: int = 0
    ):
        if global_batch % (micro_batch * world_size):
            raise DataError(
                f"global_batch_size {global_batch} is not a multiple of micro_batch_size x processes "
                f"({micro_batch} x {world_size})"
            )
        self.order = list(order)
        self.global_batch, self.micro, self.world, self.rank = global_batch, micro_batch, world_size, rank
        self.accum = global_batch // (micro_batch * world_size)
        self.start_step = start_step

    @property
    def steps(self) -> int:
        return len(self.order) // self.global_batch  # the last partial global batch is dropped

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step) * self.accum

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.steps):
            batch = self.order[step * self.global_batch : (step + 1) * self.global_batch]
            for a in range(self.accum):
                k = a * self.world + self.rank
                yield batch[k * self.micro : (k + 1) * self.micro]


class Collator:
    """Pads good samples into a batch and keeps the bad ones aside (ids and reasons)."""

    def __init__(self, processor: FusionProcessor):
        self.processor = processor

    def __call__(self, items: Sequence[dict[str, Any] | BadSample]) -> dict[str, Any]:
        good = [x for x in items if not isinstance(x, BadSample)]
        bad = [x for x in items if isinstance(x, BadSample)]
        batch: dict[str, Any] = {"bad": bad, "ids": [x["id"] for x in good], "size": len(items)}
        if good:
            samples = [{k: v for k, v in x.items() if k != "id"} for x in good]
            batch["inputs"] = self.processor.collate(samples, padding_side="right")
            if "pixel_values" not in batch["inputs"]:  # a text-only batch still runs the vision side
                s = self.processor.image_processor.image_size
                batch["inputs"]["pixel_values"] = torch.zeros(len(good), 5, 3, s, s)
        return batch


def check_data(data: str | Path, processor: FusionProcessor, image_folder: str | None) -> dict[str, Any]:
    """Reads every sample as training would and lists the problems with the sample ids."""
    records = load_records(data)
    dataset = FusionDataset(records, processor, image_folder)
    problems = []
    images = 0
    for i in range(len(dataset)):
        images += int(dataset.has_image(i))
        item = dataset[i]
        if isinstance(item, BadSample):
            problems.append({"id": item.id, "reason": item.reason})
    return {"samples": len(records), "images": images, "problems": problems}
