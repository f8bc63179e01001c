"""``fusion eval run``: answers a benchmark's questions with a FUSION model.

- Greedy by default (``temperature 0``), batched (left-padded batches give the same tokens as one
  question at a time).
- Sharded: ``--shard i/n``, or torchrun's / accelerate's ``RANK`` and ``WORLD_SIZE``; shard i
  answers the questions at positions p with ``p % n == i`` into ``<out>.shard<i>-of-<n>.jsonl``. The
  last shard to finish merges every answer into ``<out>`` in question order (under a file lock, so
  shards finishing together cannot both miss the merge) and removes the shard files.
- Resumable: answers already in ``<out>`` or in any shard file of it are skipped; each batch is
  appended and fsynced, and a torn last line left by a killed process is dropped on restart.
- A run record ``<out>.run.json`` (model, config hash, q, decoding and prompt settings, question
  file hash, versions) is written first; resuming with different settings is refused rather than
  mixing answers of two configurations.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import platform
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .files import EvalInputError, read_json, write_json, write_jsonl
from .prompts import KINDS, format_question
from .questions import decode_image_base64, expand_circular, read_questions

# Settings that change the answers: a resumed run must match the recorded ones.
_COMPATIBILITY_KEYS = ("config_sha256", "questions_sha256", "query_len", "dtype", "decoding", "prompt")
_PASSTHROUGH = ("category", "image", "circular_group", "circular_index")


@dataclass
class RunSettings:
    batch_size: int = 8
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float | None = None
    num_beams: int = 1
    seed: int = 0
    query_len: int | None = None
    kind: str = "auto"
    lang: str = "en"
    circular: bool = False
    limit: int | None = None
    dtype: str = "auto"
    device: str | None = None
    shard: tuple[int, int] = (0, 1)

    def __post_init__(self) -> None:
        index, count = self.shard
        if not 0 <= index < count:
            raise ValueError(f"shard must be i/n with 0 <= i < n, got {index}/{count}")
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.num_beams < 1:
            raise ValueError("batch size, max new tokens and beams must be at least 1")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.lang not in ("en", "cn"):
            raise ValueError(f"lang must be en or cn, got {self.lang!r}")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")


@dataclass
class RunResult:
    out: Path
    answered: int
    skipped: int
    merged: bool
    waiting_for: list[int] = field(default_factory=list)


def shard_from_env() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` as torchrun and ``accelerate launch`` set them (``(0, 1)`` otherwise)."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as err:
        raise EvalInputError(f"RANK / WORLD_SIZE are not integers: {err}") from err
    if not 0 <= rank < world:
        raise EvalInputError(f"RANK={rank} is not within WORLD_SIZE={world}")
    return rank, world


def parse_shard(text: str) -> tuple[int, int]:
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--shard must be i/n, got {text!r}")
    index, count = int(parts[0]), int(parts[1])
    if not 0 <= index < count:
        raise ValueError(f"--shard must be i/n with 0 <= i < n, got {text!r}")
    return index, count


def shard_path(out: Path, index: int, count: int) -> Path:
    return out.with_name(f"{out.stem}.shard{index}-of-{count}{out.suffix}")


def record_path(out: Path) -> Path:
    return out.with_name(out.name + ".run.json")


def _shard_files(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f"{glob.escape(out.stem)}.shard*-of-*{glob.escape(out.suffix)}"))


def load_answer_rows(path: Path, questions: list[dict[str, Any]], own: bool) -> list[dict[str, Any]]:
    """Complete answer rows of a runner file, checked against the question file. A torn last line
    (no newline: the writer was killed mid-write) is cut off when this process owns the file and
    ignored otherwise; any other unreadable line is an error."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data) and own:
        with open(path, "r+b") as f:
            f.truncate(end)
    rows = []
    for n, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise EvalInputError(f"{path}:{n}: not valid JSON ({err.msg}); remove or repair the line") from err
        pos = row.get("row") if isinstance(row, dict) else None
        if not isinstance(pos, int) or not 0 <= pos < len(questions):
            raise EvalInputError(f"{path}:{n}: not an answer of this question file (row {pos!r}); use another --out")
        if row.get("question_id") != questions[pos]["question_id"]:
            raise EvalInputError(
                f"{path}:{n}: row {pos} answers question {row.get('question_id')!r} but the question file has "
                f"{questions[pos]['question_id']!r} there; use another --out"
            )
        rows.append(row)
    return rows


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """An exclusive lock beside the answers, so shards that finish together merge one at a time."""
    import fcntl

    lock = out.with_name(f".{out.name}.lock")
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def merge_answers(out: Path, questions: list[dict[str, Any]], wanted: int, count: int = 1) -> list[int]:
    """Once the first ``wanted`` questions are all answered, writes every answer found (in ``out`` and
    the shard files) into ``out`` in question order and removes the shard files. Returns the shards
    still missing answers (empty once merged)."""
    with _locked(out):
        rows: dict[int, dict[str, Any]] = {}
        shards = _shard_files(out)
        for src in [out, *shards]:
            for row in load_answer_rows(src, questions, own=False):
                rows.setdefault(row["row"], row)
        missing = [i for i in range(wanted) if i not in rows]
        if missing:
            return sorted({i % count for i in missing})
        ordered = [rows[i] for i in sorted(rows)]
        current = load_answer_rows(out, questions, own=False) if out.exists() else []
        if shards or [r["row"] for r in current] != sorted(rows):
            write_jsonl(out, ordered)
        for src in shards:
            src.unlink(missing_ok=True)
        record = record_path(out)
        if record.exists():
            data = read_json(record)
            data.update(completed=len(ordered) == len(questions), num_answers=len(ordered))
            write_json(record, data)
        return []


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def config_sha256(config: Any) -> str:
    """Hash of the model config (the architecture and the settings that shape answers)."""
    data = config.to_dict()
    data.pop("transformers_version", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import torch
    import transformers

    try:
        fusion_version = version("fusion-vlm")
    except PackageNotFoundError:
        fusion_version = "unknown"
    return {
        "fusion-vlm": fusion_version,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def _check_record(path: Path, record: dict[str, Any]) -> None:
    if not path.exists():
        write_json(path, record)
        return
    old = read_json(path)
    for key in _COMPATIBILITY_KEYS:
        if old.get(key) != record.get(key):
            raise EvalInputError(
                f"{path.name.removesuffix('.run.json')} holds answers made with other settings ({key}: "
                f"{old.get(key)!r} then, {record.get(key)!r} now); use another --out to keep both"
            )


def resolve_device_dtype(device: str | None, dtype: str) -> tuple[str, Any]:
    import torch

    if device is None:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"
    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    if dtype not in names:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
    return device, names[dtype]


def load_config(model_dir: str | os.PathLike) -> Any:
    """The checkpoint's config (read before the weights, to check a resumed run's settings)."""
    from transformers import AutoConfig

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise EvalInputError(f"no FUSION checkpoint at {path} (config.json not found)")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise EvalInputError(f"cannot read {path / 'config.json'}: {first}") from err
    if not hasattr(config, "default_query_len"):
        raise EvalInputError(f"{path} is not a FUSION checkpoint (model type {config.model_type!r})")
    return config


def load_model(model_dir: str | os.PathLike, device: str, dtype: Any) -> tuple[Any, Any]:
    """The model and processor of a checkpoint folder; a missing or broken folder raises EvalInputError."""
    from transformers import logging as hf_logging

    from .. import FusionForCausalLM, FusionProcessor, VisionTowerNotFoundError

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise EvalInputError(f"no FUSION checkpoint at {path} (config.json not found)")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model = FusionForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        processor = FusionProcessor.from_pretrained(path)
    except (VisionTowerNotFoundError, OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise EvalInputError(f"cannot load {path}: {first}") from err
    return model, processor


def _image_of(question: dict[str, Any], image_folder: Path | None) -> Any:
    if question.get("image_base64"):
        return decode_image_base64(question)
    name = question.get("image")
    if not name:
        return None
    path = Path(name)
    return path if path.is_absolute() or image_folder is None else image_folder / path


def _check_images(questions: list[dict[str, Any]], image_folder: Path | None) -> None:
    for q in questions:
        image = _image_of(q, image_folder)
        if isinstance(image, Path) and not image.is_file():
            raise EvalInputError(f"question {q['question_id']!r}: image {image} not found")


def _prepare(
    questions: list[dict[str, Any]], processor: Any, folder: Path | None, settings: RunSettings
) -> tuple[list[str], list[Any], list[str]]:
    """Chat prompts, images and the formatted questions (which also guide the vision encoder)."""
    from ..image_processing_fusion import ImageLoadError, load_image

    prompts, images, texts = [], [], []
    for q in questions:
        text = format_question(q, settings.kind, settings.lang)
        source = _image_of(q, folder)
        try:
            image = load_image(source) if source is not None else None
        except ImageLoadError as err:
            raise EvalInputError(f"question {q['question_id']!r}: {err}") from err
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        if image is not None:
            content.insert(0, {"type": "image"})
        prompts.append(
            processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        )
        images.append(image)
        texts.append(text)
    return prompts, images, texts


def run_eval(
    model_dir: str | os.PathLike,
    questions_file: str | os.PathLike,
    image_folder: str | os.PathLike | None,
    out_file: str | os.PathLike,
    settings: RunSettings,
    on_batch: Callable[[int], None] | None = None,
) -> RunResult:
    """Answers this shard's questions (``on_batch(written)`` after each fsynced batch), then merges
    if every shard is done."""
    import torch
    from tqdm.auto import tqdm
    from transformers import set_seed

    out = Path(out_file)
    questions_file = Path(questions_file)
    folder = Path(image_folder) if image_folder is not None else None
    questions = read_questions(questions_file)
    if settings.circular:
        questions = expand_circular(questions)
    wanted = len(questions) if settings.limit is None else min(settings.limit, len(questions))
    index, count = settings.shard
    own = out if count == 1 else shard_path(out, index, count)
    out.parent.mkdir(parents=True, exist_ok=True)

    done: set[int] = set()
    for path in {own, out, *_shard_files(out)}:
        done |= {r["row"] for r in load_answer_rows(path, questions, own=False)}
    mine = [p for p in range(wanted) if p % count == index]
    todo = [p for p in mine if p not in done]

    config = load_config(model_dir)
    device, dtype = resolve_device_dtype(settings.device, settings.dtype)
    query_len = settings.query_len if settings.query_len is not None else config.default_query_len
    if round(query_len**0.5) ** 2 != query_len:
        raise ValueError(f"--query-len must be a perfect square, got {query_len}")
    sampling = settings.temperature > 0
    decoding = {
        "do_sample": sampling,
        "max_new_tokens": settings.max_new_tokens,
        "num_beams": settings.num_beams,
        **({"temperature": settings.temperature, "top_p": settings.top_p, "seed": settings.seed} if sampling else {}),
    }
    record = {
        "model": str(model_dir),
        "model_id": Path(model_dir).resolve().name,
        "config_sha256": config_sha256(config),
        "query_len": query_len,
        "dtype": str(dtype).removeprefix("torch."),
        "decoding": decoding,
        "prompt": {"kind": settings.kind, "lang": settings.lang, "circular": settings.circular},
        "questions": str(questions_file),
        "questions_sha256": _sha256_file(questions_file),
        "num_questions": len(questions),
        "images": None if folder is None else str(folder),
        "batch_size": settings.batch_size,
        "shards": count,
        "versions": _versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "completed": False,
    }
    _check_record(record_path(out), record)
    load_answer_rows(own, questions, own=True)  # settings agree: now drop a torn last line before appending
    if not todo:  # nothing left for this shard: no model needed, just the merge
        waiting = merge_answers(out, questions, wanted, count)
        return RunResult(out=out, answered=0, skipped=len(mine), merged=not waiting, waiting_for=waiting)
    _check_images([questions[p] for p in todo], folder)
    model, processor = load_model(model_dir, device, dtype)
    set_seed(settings.seed)

    generate_kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "num_beams": settings.num_beams,
        "do_sample": sampling,
    }
    if sampling:
        generate_kwargs["temperature"] = settings.temperature
        if settings.top_p is not None:
            generate_kwargs["top_p"] = settings.top_p

    bar = tqdm(
        total=len(mine),
        initial=len(mine) - len(todo),
        desc=f"{out.name} shard {index}/{count}",
        unit="q",
        file=sys.stderr,
        mininterval=1.0,
    )
    written = 0
    with open(own, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), settings.batch_size):
            rows = todo[start : start + settings.batch_size]
            prompts, images, texts = _prepare([questions[p] for p in rows], processor, folder, settings)
            has_images = any(i is not None for i in images)
            inputs = processor(text=prompts, images=images if has_images else None, questions=texts)
            inputs = {k: v.to(device) for k, v in inputs.items()}
            with torch.inference_mode():
                seqs = model.generate(**inputs, query_len=settings.query_len, **generate_kwargs)
            answers = processor.batch_decode(seqs[:, inputs["input_ids"].shape[1] :])
            for p, text, answer in zip(rows, texts, answers, strict=True):
                q = questions[p]
                row = {"question_id": q["question_id"], "row": p, "prompt": text, "text": answer.strip()}
                row.update({k: q[k] for k in _PASSTHROUGH if q.get(k) is not None})
                row["model_id"] = record["model_id"]
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            written += len(rows)
            bar.update(len(rows))
            if on_batch is not None:
                on_batch(written)
    bar.close()
    waiting = merge_answers(out, questions, wanted, count)
    return RunResult(out=out, answered=written, skipped=len(mine) - len(todo), merged=not waiting, waiting_for=waiting)
