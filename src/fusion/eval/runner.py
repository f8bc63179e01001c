"""`fusion eval run`: answers a LLaVA-format question file with a FUSION model.

Greedy by default, batched, resumable (answers already in the output are skipped) and sharded over
processes (``--shard i/n``, or torchrun's RANK / WORLD_SIZE); shards write their own JSONL and the
last one to finish merges them in question order. A run record (model, config hash, q, decoding
settings, versions) is written beside the answers.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .prompts import format_question


class EvalInputError(ValueError):
    """A question file or image folder is unusable (with the file and line)."""


@dataclass
class EvalSettings:
    batch_size: int = 8
    max_new_tokens: int = 128
    temperature: float = 0.0
    query_len: int | None = None
    shard: tuple[int, int] = (0, 1)


def read_questions(path: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise EvalInputError(f"cannot read {path}: {err}") from err
    questions, seen = [], set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
        except json.JSONDecodeError as err:
            raise EvalInputError(f"{path}:{n}: not valid JSON ({err.msg})") from err
        if not isinstance(q, dict) or "question_id" not in q or "text" not in q:
            raise EvalInputError(f"{path}:{n}: needs question_id and text")
        if q["question_id"] in seen:
            raise EvalInputError(f"{path}:{n}: duplicate question_id {q['question_id']!r}")
        seen.add(q["question_id"])
        questions.append(q)
    return questions


def _done_ids(path: Path) -> set:
    if not path.exists():
        return set()
    ids, good = set(), 0
    data = path.read_bytes()
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        ids.add(json.loads(line)["question_id"])
        good += len(line)
    if good != len(data):  # a torn last line from a killed run
        with open(path, "r+b") as f:
            f.truncate(good)
    return ids


def run_eval(
    model_dir: str | os.PathLike,
    questions_file: str | os.PathLike,
    image_folder: str | os.PathLike | None,
    out_file: str | os.PathLike,
    settings: EvalSettings,
) -> Path:
    """Answers this shard's questions; returns the path of the merged answers once all shards are done."""
    from tqdm.auto import tqdm

    from .. import FusionForCausalLM, FusionProcessor
    from ..image_processing_fusion import ImageLoadError, load_image

    out = Path(out_file)
    questions = read_questions(questions_file)
    index, count = settings.shard
    mine = [q for i, q in enumerate(questions) if i % count == index]
    shard_file = out if count == 1 else out.with_name(f"{out.stem}.shard{index}of{count}{out.suffix}")
    shard_file.parent.mkdir(parents=True, exist_ok=True)
    done = _done_ids(shard_file)
    todo = [q for q in mine if q["question_id"] not in done]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = FusionForCausalLM.from_pretrained(model_dir).to(device).eval()
    processor = FusionProcessor.from_pretrained(model_dir)
    q_used = settings.query_len or model.config.default_query_len
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc=f"eval {index}/{count}", unit="q")
    with open(shard_file, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), settings.batch_size):
            batch = todo[start : start + settings.batch_size]
            prompts, images, texts = [], [], []
            for q in batch:
                text = format_question(q)
                image = None
                if q.get("image"):
                    path = (
                        Path(q["image"]) if Path(q["image"]).is_absolute() else Path(image_folder or ".") / q["image"]
                    )
                    try:
                        image = load_image(path)
                    except ImageLoadError as err:
                        raise EvalInputError(f"question {q['question_id']}: {err}") from err
                content = [{"type": "text", "text": text}]
                if image is not None:
                    content.insert(0, {"type": "image"})
                prompts.append(
                    processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
                )
                images.append(image)
                texts.append(text)
            inputs = processor(
                text=prompts, images=images if any(i is not None for i in images) else None, questions=texts
            )
            inputs = {k: v.to(device) for k, v in inputs.items()}
            sampling = (
                {"do_sample": True, "temperature": settings.temperature}
                if settings.temperature > 0
                else {"do_sample": False}
            )
            with torch.inference_mode():
                seqs = model.generate(
                    **inputs, max_new_tokens=settings.max_new_tokens, query_len=settings.query_len, **sampling
                )
            answers = processor.batch_decode(seqs[:, inputs["input_ids"].shape[1] :])
            for q, prompt_text, answer in zip(batch, texts, answers, strict=True):
                row = {
                    "question_id": q["question_id"],
                    "prompt": prompt_text,
                    "text": answer.strip(),
                    "category": q.get("category"),
                    "model_id": Path(model_dir).name,
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            bar.update(len(batch))
    bar.close()
    record = {
        "model": str(model_dir),
        "config_sha256": hashlib.sha256(
            json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode()
        ).hexdigest(),
        "query_len": q_used,
        "decoding": {k: v for k, v in asdict(settings).items() if k != "shard"},
        "questions": str(questions_file),
        "num_questions": len(questions),
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    }
    out.with_name(out.name + ".run.json").write_text(json.dumps(record, indent=2))
    return merge_shards(questions, out, count) if count > 1 else out


def merge_shards(questions: list[dict[str, Any]], out: Path, count: int) -> Path:
    """Joins the shards in question order once every shard is complete (else leaves them as they are)."""
    rows: dict[Any, str] = {}
    for i in range(count):
        shard = out.with_name(f"{out.stem}.shard{i}of{count}{out.suffix}")
        if not shard.exists():
            return out
        for line in shard.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows[json.loads(line)["question_id"]] = line
    if len(rows) < len(questions):
        return out
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("".join(rows[q["question_id"]] + "\n" for q in questions), encoding="utf-8")
    os.replace(tmp, out)
    return out
