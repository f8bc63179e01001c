"""The synthesis pipeline: resumable, shardable stages that each append to a JSONL file.

captions -> descriptions -> images -> qa -> candidates (rule filters) -> data.json (deduplicated)

Ids are derived from content, so a restart skips what is done and a record is never written twice;
every record that drops out lands in ``rejects.jsonl`` with its stage and reason. With
``--shard i/n`` a machine handles the records whose id falls in its shard; ``merge`` joins the
shards' candidates and deduplicates them exactly as a single run does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from .filters import Deduplicator, FilterConfig, rule_problem
from .images import DiffusersBackend, HttpImageBackend, side_by_side
from .llm import LLMError, OpenAIBackend
from .prompts import (
    CATEGORIES,
    INSTRUCTION_TYPES,
    PROCEDURAL_INSTRUCTION_TYPES,
    SYSTEM,
    TEXT_ONLY_INSTRUCTION_TYPES,
    contrast_prompt,
    description_prompt,
    judge_prompt,
    qa_prompt,
)
from .qa import LETTERS, MC_SUFFIX, SHORT_SUFFIX, QAFormatError, to_conversation
from .scene import Scene, choice_options, describe, exact_qa, random_scene, render
from .store import JsonlStore, content_id, in_shard


class SynthConfigError(ValueError):
    """A pipeline YAML is malformed."""


@dataclass
class PipelineConfig:
    output_dir: Path
    image_backend: str = "procedural"  # procedural | diffusers | http
    categories: list[str] = field(default_factory=lambda: list(CATEGORIES))
    instruction_types: list[str] = field(default_factory=lambda: ["short_conversation"])
    seed: int = 0
    num_scenes: int = 100  # procedural
    canvas: list[int] = field(default_factory=lambda: [256, 192])  # procedural image size [width, height]
    # Procedural short answers: the share of questions that carry the short-answer suffix; the others
    # are asked plainly, as people ask in a chat.
    short_suffix_ratio: float = 1.0
    # Procedural: the share of color, count and spatial scenes that also show a word (text and scene
    # scenes always do); above 0, a word on the image no longer implies a question about it.
    word_ratio: float = 0.0
    captions: list[Path] = field(default_factory=list)
    llm: dict[str, Any] = field(default_factory=dict)  # OpenAIBackend fields
    diffusers: dict[str, Any] = field(default_factory=dict)
    http_images: dict[str, Any] = field(default_factory=dict)
    filters: FilterConfig = field(default_factory=FilterConfig)
    max_captions: int | None = None
    judge: dict[str, Any] = field(default_factory=dict)  # {enabled, use_image, llm: {...} (default: llm)}


def load_pipeline(path: str | os.PathLike, output_dir: str | None = None) -> PipelineConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise SynthConfigError(f"cannot read pipeline {path}: {err}") from err
    if not isinstance(raw, dict):
        raise SynthConfigError(f"{path}: expected a mapping")
    known = set(PipelineConfig.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise SynthConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    base = path.parent
    raw["output_dir"] = Path(output_dir) if output_dir else base / raw.get("output_dir", "synth_out")
    raw["captions"] = [p if Path(p).is_absolute() else base / p for p in raw.get("captions", [])]
    raw["filters"] = FilterConfig(**(raw.get("filters") or {}))
    config = PipelineConfig(**raw)
    for c in config.categories:
        if c not in CATEGORIES:
            raise SynthConfigError(f"unknown category {c!r} (known: {', '.join(CATEGORIES)})")
    known_types = PROCEDURAL_INSTRUCTION_TYPES if config.image_backend == "procedural" else INSTRUCTION_TYPES
    for t in config.instruction_types:
        if t not in known_types:
            raise SynthConfigError(
                f"unknown instruction type {t!r} for the {config.image_backend} backend "
                f"(known: {', '.join(known_types)})"
            )
    if not config.instruction_types:
        raise SynthConfigError("instruction_types is empty")
    if (
        len(config.canvas) != 2
        or not all(isinstance(v, int) for v in config.canvas)
        or not (64 <= config.canvas[0] <= 4096 and 64 <= config.canvas[1] <= 4096)
    ):
        raise SynthConfigError(f"canvas must be [width, height] with each in 64..4096, got {config.canvas!r}")
    for name in ("short_suffix_ratio", "word_ratio"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise SynthConfigError(f"{name} must be in [0, 1], got {value!r}")
    if config.image_backend not in ("procedural", "diffusers", "http"):
        raise SynthConfigError(f"image_backend must be procedural, diffusers or http, got {config.image_backend!r}")
    if config.image_backend != "procedural" and not config.captions:
        raise SynthConfigError("captions are required unless image_backend is procedural")
    if config.judge.get("enabled") and not (config.judge.get("llm", {}).get("base_url") or config.llm.get("base_url")):
        raise SynthConfigError("judge.enabled needs an endpoint: llm.base_url or judge.llm.base_url")
    if config.image_backend != "procedural" and not config.llm.get("base_url"):
        raise SynthConfigError("llm.base_url (an OpenAI-compatible endpoint) is required for LLM stages")
    return config


def load_captions(paths: list[Path]) -> list[str]:
    """Captions from .txt (one per line), .json / .jsonl (strings, {caption|text}, or LLaVA records)."""
    captions: list[str] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise SynthConfigError(f"cannot read captions {path}: {err}") from err
        if path.suffix == ".txt":
            captions += [line.strip() for line in text.splitlines() if line.strip()]
            continue
        try:
            items = (
                [json.loads(x) for x in text.splitlines() if x.strip()] if path.suffix == ".jsonl" else json.loads(text)
            )
        except json.JSONDecodeError as err:
            raise SynthConfigError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from err
        for item in items:
            if isinstance(item, str):
                captions.append(item)
            elif isinstance(item, dict) and (item.get("caption") or item.get("text")):
                captions.append(str(item.get("caption") or item.get("text")))
            elif isinstance(item, dict) and item.get("conversations"):
                gpt = [t["value"] for t in item["conversations"] if t.get("from") == "gpt"]
                if gpt:
                    captions.append(gpt[0])
    return [c.strip() for c in captions if c.strip()]


def procedural_conversation(
    scene: Scene, category: str, kind: str, rng: random.Random, short_suffix_ratio: float = 1.0
) -> list[dict[str, str]]:
    """Exact turns for a procedural scene. ``caption``: the scene caption; ``short_conversation``: every
    exact question (shuffled, multi-turn) with the short-answer suffix; ``multiple_choice``: the same
    questions with four options where the answer has distractors of its kind, short answers otherwise;
    ``text_multiple_choice``: multiple choice with 2-4 options about the caption, which opens the first
    turn (no image)."""
    if kind == "caption":
        return [
            {"from": "human", "value": "Describe the image briefly."},
            {"from": "gpt", "value": describe(scene)},
        ]
    pairs = exact_qa(scene, category, rng)
    rng.shuffle(pairs)
    turns: list[dict[str, str]] = []
    for q, a in pairs:
        options = None
        if kind == "multiple_choice":
            options = choice_options(a, rng)
        elif kind == "text_multiple_choice":
            options = choice_options(a, rng, rng.randint(2, len(LETTERS)))
        if options is None:
            # rng is drawn only below ratio 1, so default data stays what it was
            plain = short_suffix_ratio < 1.0 and rng.random() >= short_suffix_ratio
            turns += [{"from": "human", "value": q if plain else f"{q}\n{SHORT_SUFFIX}"}, {"from": "gpt", "value": a}]
        else:
            listed = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
            letter = LETTERS[options.index(a)]
            turns += [{"from": "human", "value": f"{q}\n{listed}\n{MC_SUFFIX}"}, {"from": "gpt", "value": letter}]
    if kind in TEXT_ONLY_INSTRUCTION_TYPES and turns:
        turns[0]["value"] = f"Scene: {describe(scene)}\n{turns[0]['value']}"
    return turns


def _pick(options: list[str], record_id: str, salt: int) -> str:
    return options[(int(record_id[8:16], 16) + salt) % len(options)]


class Pipeline:
    def __init__(self, config: PipelineConfig, shard: tuple[int, int] = (0, 1), llm=None, image_backend=None):
        self.config = config
        self.shard = shard
        self.out = Path(config.output_dir)
        suffix = "" if shard == (0, 1) else f".shard{shard[0]}of{shard[1]}"
        self.stores = {
            name: JsonlStore(self.out / f"{name}{suffix}.jsonl")
            for name in ("captions", "descriptions", "images", "qa", "judged", "candidates", "rejects")
        }
        self.rejected = {(r["stage"], r["id"]) for r in self.stores["rejects"]}
        self.llm = llm
        self.image_backend = image_backend

    # ----- helpers --------------------------------------------------------------------------------
    def reject(self, stage: str, record: dict[str, Any], reason: str) -> None:
        self.stores["rejects"].append(
            {
                "id": content_id(stage, record["id"]),
                "record_id": record["id"],
                "stage": stage,
                "category": record.get("category"),
                "reason": reason,
            }
        )
        self.rejected.add((stage, record["id"]))

    def pending(self, stage: str, source: str) -> list[dict[str, Any]]:
        store = self.stores[stage]
        return [r for r in self.stores[source] if r["id"] not in store and (stage, r["id"]) not in self.rejected]

    def _llm(self):
        if self.llm is None:
            self.llm = OpenAIBackend(**self.config.llm)
        return self.llm

    # ----- stages ---------------------------------------------------------------------------------
    def stage_captions(self) -> None:
        cfg, store = self.config, self.stores["captions"]
        if cfg.image_backend == "procedural":
            for n in range(cfg.num_scenes):
                rng = random.Random(f"{cfg.seed}:{n}")
                category = cfg.categories[n % len(cfg.categories)]
                scene = random_scene(rng, category, *cfg.canvas, word_ratio=cfg.word_ratio)
                # word_ratio joins the id only when set, so default ids (and resumed stores) stay as they were
                extra = (cfg.word_ratio,) if cfg.word_ratio else ()
                rid = content_id("scene", cfg.seed, n, category, *cfg.canvas, *extra)
                if in_shard(rid, self.shard) and rid not in store:
                    store.append(
                        {
                            "id": rid,
                            "category": category,
                            "caption": describe(scene),
                            "scene": scene.to_dict(),
                            "index": n,
                            "instruction_type": _pick(cfg.instruction_types, rid, 1),
                        }
                    )
            return
        captions = load_captions(cfg.captions)[: cfg.max_captions]
        for caption in captions:
            rid = content_id("caption", caption)
            if in_shard(rid, self.shard) and rid not in store:
                category = _pick(cfg.categories, rid, 0)
                store.append(
                    {
                        "id": rid,
                        "category": category,
                        "caption": caption,
                        "instruction_type": _pick(cfg.instruction_types, rid, 1),
                    }
                )

    async def _map_llm(self, stage: str, source: str, work, llm=None) -> None:
        todo = self.pending(stage, source)
        if not todo:
            return
        bar = tqdm(total=len(todo), desc=stage, unit="rec")
        async with llm or self._llm() as llm:

            async def one(record):
                try:
                    result = await work(llm, record)
                except (LLMError, QAFormatError) as err:
                    self.reject(stage, record, f"{type(err).__name__}: {err}")
                else:
                    self.stores[stage].append(result)
                bar.update(1)

            await asyncio.gather(*(one(r) for r in todo))
        bar.close()

    async def stage_descriptions(self) -> None:
        if self.config.image_backend == "procedural":  # the scene spec is the description, exactly
            for r in self.pending("descriptions", "captions"):
                self.stores["descriptions"].append({**r, "description": r["caption"]})
            return

        async def work(llm, r):
            description = (await llm.complete(description_prompt(r["caption"], r["category"]), SYSTEM)).strip()
            if not description:
                raise QAFormatError("empty description")
            out = {**r, "description": description}
            if r["instruction_type"].startswith("contrast"):
                out["description_b"] = (await llm.complete(contrast_prompt(description, r["category"]), SYSTEM)).strip()
            return out

        await self._map_llm("descriptions", "captions", work)

    def stage_images(self) -> None:
        todo = self.pending("images", "descriptions")
        folder = self.out / "images"
        folder.mkdir(parents=True, exist_ok=True)
        for r in tqdm(todo, desc="images", unit="img"):
            if r.get("instruction_type") in TEXT_ONLY_INSTRUCTION_TYPES:  # the scene is given in words
                self.stores["images"].append({**r, "image": None})
                continue
            seed = int(r["id"][:8], 16)
            try:
                if self.config.image_backend == "procedural":
                    image = render(Scene.from_dict(r["scene"]))
                else:
                    backend = self._image_backend()
                    image = backend.generate(r["description"], seed)
                    if r.get("description_b"):
                        image = side_by_side(image, backend.generate(r["description_b"], seed))
            except (OSError, ValueError, RuntimeError) as err:
                self.reject("images", r, f"image generation failed: {err}")
                continue
            name = f"{r['id']}.png"
            tmp = folder / f".{name}.tmp"
            image.save(tmp, format="PNG")
            os.replace(tmp, folder / name)  # the record is written only once its file is complete
            self.stores["images"].append({**r, "image": f"images/{name}"})

    def _image_backend(self):
        if self.image_backend is None:
            cfg = self.config
            self.image_backend = (
                DiffusersBackend(**cfg.diffusers)
                if cfg.image_backend == "diffusers"
                else HttpImageBackend(**cfg.http_images)
            )
        return self.image_backend

    async def stage_qa(self) -> None:
        if self.config.image_backend == "procedural":
            for r in self.pending("qa", "images"):
                kind = r.get("instruction_type", "short_conversation")
                turns = procedural_conversation(
                    Scene.from_dict(r["scene"]),
                    r["category"],
                    kind,
                    random.Random(r["id"]),
                    self.config.short_suffix_ratio,
                )
                if not turns:
                    self.reject("qa", r, "no exact question for this scene")
                    continue
                self.stores["qa"].append({**r, "instruction_type": kind, "conversations": turns})
            return

        async def work(llm, r):
            answer = await llm.complete(
                qa_prompt(r["description"], r["instruction_type"], r.get("description_b")), SYSTEM
            )
            return {**r, "conversations": to_conversation(answer, r["instruction_type"])}

        await self._map_llm("qa", "images", work)

    async def stage_judge(self) -> None:
        """Model-based consistency scoring (a VLM judge sees the image): records below the
        threshold are rejected with their score."""
        judge = self.config.judge
        threshold = self.config.filters.min_consistency
        use_image = judge.get("use_image", True)
        backend = OpenAIBackend(**{**self.config.llm, **judge.get("llm", {}), "temperature": 0.0})

        async def work(llm, r):
            image_url = None
            if use_image and r.get("image"):  # text-only records are judged on their text
                data = (self.out / r["image"]).read_bytes()
                image_url = "data:image/png;base64," + base64.b64encode(data).decode()
            answer = await llm.complete(
                judge_prompt(r.get("description", ""), r["conversations"], use_image), SYSTEM, image_url
            )
            match = re.search(r"\d+(?:\.\d+)?", answer)
            if match is None:
                raise QAFormatError(f"judge gave no score: {answer[:80]!r}")
            score = float(match.group(0))
            if threshold is not None and score < threshold:
                raise QAFormatError(f"consistency {score:.2f} below {threshold}")
            return {**r, "consistency": score}

        await self._map_llm("judged", "qa", work, llm=backend)

    def stage_candidates(self) -> None:
        source = "judged" if self.config.judge.get("enabled") else "qa"
        for r in self.pending("candidates", source):
            problem = rule_problem(r, self.config.filters)
            if problem:
                self.reject("candidates", r, problem)
            else:
                self.stores["candidates"].append(r)

    def run(self, finalize: bool = True) -> dict[str, Any] | None:
        record_filters(self.out, self.config.filters)
        record_settings(self.out, self.config)
        self.stage_captions()
        asyncio.run(self.stage_descriptions())
        self.stage_images()
        asyncio.run(self.stage_qa())
        if self.config.judge.get("enabled"):
            asyncio.run(self.stage_judge())
        self.stage_candidates()
        if finalize:
            return finalize_outputs([self.out], self.out, self.config.filters)
        return None


FILTERS_FILE = "filters.json"
SETTINGS_FILE = "settings.json"


def content_settings(config: PipelineConfig) -> dict[str, Any]:
    """The settings that decide what a stored record says. A resumed run keeps every record already in
    its stores, so resuming with other values would mix two datasets without a word. (Not here: what
    only extends a run, such as num_scenes and max_captions, or only changes how it runs.)"""
    return {
        "image_backend": config.image_backend,
        "categories": list(config.categories),
        "instruction_types": list(config.instruction_types),
        "seed": config.seed,
        "canvas": list(config.canvas),
        "short_suffix_ratio": config.short_suffix_ratio,
        "word_ratio": config.word_ratio,
        "llm_model": config.llm.get("model"),
    }


def record_settings(out: Path, config: PipelineConfig) -> None:
    """Writes :func:`content_settings` next to the outputs on the first run; a later run into the same
    folder (a resume, another shard) must have the same, or it is refused naming what differs."""
    _record(Path(out), SETTINGS_FILE, content_settings(config), "settings")


def record_filters(out: Path, filters: FilterConfig) -> None:
    """Writes the run's filters next to its outputs, so that `fusion synth merge` applies the same ones;
    shards of one run must agree on them."""
    _record(Path(out), FILTERS_FILE, asdict(filters), "filters")


def _record(out: Path, name: str, wanted: dict[str, Any], what: str) -> None:
    path = out / name
    if path.is_file():
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise SynthConfigError(f"{path} is malformed: {err}") from err
        differ = sorted(k for k in wanted.keys() | recorded.keys() if recorded.get(k) != wanted.get(k))
        if differ:
            was = ", ".join(f"{k}={recorded.get(k)!r}" for k in differ)
            raise SynthConfigError(f"{out} holds outputs made with other {what} ({was}); use another output folder")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, json.dumps(wanted, indent=1))


def recorded_filters(out: Path) -> FilterConfig:
    """The filters `fusion synth run` recorded in ``out``."""
    path = Path(out) / FILTERS_FILE
    try:
        return FilterConfig(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as err:
        raise SynthConfigError(f"{out} has no {FILTERS_FILE} (written by `fusion synth run`)") from err
    except (json.JSONDecodeError, TypeError) as err:
        raise SynthConfigError(f"{path} is malformed: {err}") from err


def finalize_outputs(dirs: list[Path], out: Path, filters: FilterConfig) -> dict[str, Any]:
    """Deduplicates all candidates (in id order, so the result does not depend on sharding) and writes
    ``data.json`` (LLaVA format), ``rejects_all.jsonl`` and ``stats.json``."""
    candidates: dict[str, dict] = {}
    rejects: dict[str, dict] = {}
    stages: dict[str, Counter] = {
        s: Counter() for s in ("captions", "descriptions", "images", "qa", "judged", "candidates")
    }
    for d in dirs:
        for f in sorted(Path(d).glob("*.jsonl")):
            stage = f.name.split(".")[0]
            if stage != "rejects" and stage not in stages:  # outputs (questions, rejects_all), not stores
                continue
            for r in JsonlStore(f):
                if stage == "rejects":
                    rejects[r["id"]] = r
                elif stage in stages:
                    stages[stage][r["category"]] += 1
                    if stage == "candidates":
                        candidates[r["id"]] = r
    dedup = Deduplicator(filters.near_duplicate_jaccard)
    data = []
    for rid in sorted(candidates):
        r = candidates[rid]
        problem = dedup.problem(r, context=r.get("description", "")) if filters.deduplicate else None
        if problem:
            rejects[content_id("dedup", rid)] = {
                "id": content_id("dedup", rid),
                "record_id": rid,
                "stage": "dedup",
                "category": r["category"],
                "reason": problem,
            }
            continue
        turns = [dict(t) for t in r["conversations"]]
        sample: dict[str, Any] = {"id": rid}
        if r.get("image"):
            turns[0]["value"] = "<image>\n" + turns[0]["value"]
            sample["image"] = r["image"]
        data.append(
            sample | {"category": r["category"], "instruction_type": r.get("instruction_type"), "conversations": turns}
        )
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / "data.json", json.dumps(data, indent=1, ensure_ascii=False))
    questions = "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in eval_questions(data))
    _atomic_write(out / "questions.jsonl", questions)
    rows = sorted(rejects.values(), key=lambda r: r["id"])
    _atomic_write(out / "rejects_all.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    stats = {
        "records": len(data),
        "per_stage": {s: dict(sorted(c.items())) for s, c in stages.items()},
        "final_per_category": dict(sorted(Counter(r["category"] for r in data).items())),
        "rejections": dict(sorted(Counter(f"{r['stage']}: {r['reason'].split(':')[0]}" for r in rows).items())),
    }
    _atomic_write(out / "stats.json", json.dumps(stats, indent=2))
    return stats


def eval_questions(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first turn of every record as a ``fusion eval run`` question (with its ``answer``), so a
    held-out synthetic set is a benchmark: ``fusion eval score synth --annotations questions.jsonl``."""
    rows = []
    for r in data:
        question = r["conversations"][0]["value"].removeprefix("<image>\n")
        row = {
            "question_id": r["id"],
            **({"image": r["image"]} if r.get("image") else {}),
            "text": question,
            "answer": r["conversations"][1]["value"],
            "category": r["category"],
            "instruction_type": r.get("instruction_type"),
        }
        listed = dict(re.findall(r"^([A-D])\. (.*)$", question, re.MULTILINE))
        if MC_SUFFIX in question and listed:
            row.update(kind="mc", options=listed)
        elif SHORT_SUFFIX in question:
            row["kind"] = "short"
        else:
            row["kind"] = "open"
        rows.append(row)
    return rows


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
