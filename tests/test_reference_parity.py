"""Parity with the reference implementation, on every fixture folder found.

Each folder under $FUSION_REFERENCE_FIXTURES (default ../shared/fixtures/reference) holds a tiny
checkpoint made by the reference code and `golden.json` / `golden.safetensors` with what it
computed. Nothing here depends on a particular fixture: LLM family, tower, projector, window,
layer schedule and q all come from the folder.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import fusion
from fusion.processing_fusion import FusionProcessor

from .conftest import fixtures_root

ATOL = 1e-4


def _fixture_dirs() -> list[Path]:
    root = fixtures_root()
    if not root.is_dir():
        raise RuntimeError(f"reference fixtures folder {root} does not exist (set FUSION_REFERENCE_FIXTURES)")
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not dirs:
        raise RuntimeError(f"no fixture folders under {root}")
    return dirs


FIXTURES = _fixture_dirs()


@cache
def _load(folder: Path):
    golden_file = folder / "golden.json"
    if not golden_file.is_file() or not (folder / "golden.safetensors").is_file():
        raise AssertionError(f"{folder} holds no fixture (golden.json / golden.safetensors missing)")
    golden = json.loads(golden_file.read_text())
    tensors = load_file(folder / "golden.safetensors")
    ckpt = folder / golden["checkpoint"]
    model = fusion.FusionForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
    processor = FusionProcessor.from_pretrained(ckpt)
    return golden, tensors, model, processor


def _pixels(folder: Path, tensors, name: str) -> torch.Tensor:
    return tensors[f"pixels_u8/{name}"].float() / 127.5 - 1


def _train_batch(golden, tensors, folder):
    s = next(iter(tensors[k] for k in tensors if k.startswith("pixels_u8/"))).shape[-1]
    images = [
        _pixels(folder, tensors, sample["image"]) if "image" in sample else torch.zeros(5, 3, s, s)
        for sample in golden["train_samples"]
    ]
    return torch.stack(images)


@pytest.mark.parametrize("folder", FIXTURES, ids=lambda p: p.name)
def test_fixture_is_complete(folder):
    golden, tensors, _, _ = _load(folder)
    assert golden["cases"], f"{folder}: golden.json lists no cases"
    for key in ("train_batch/loss", "train_batch/logits", "inference/prefill_logits", "inference/generated_ids"):
        assert key in tensors, f"{folder}: golden.safetensors lacks {key}"


@pytest.mark.parametrize("folder", FIXTURES, ids=lambda p: p.name)
def test_pixel_preprocessing_exact(folder):
    _, tensors, _, processor = _load(folder)
    names = [k.split("/", 1)[1] for k in tensors if k.startswith("pixels_u8/")]
    assert names
    for name in names:
        got = processor.image_processor(images=[Image.open(folder / name)], return_tensors="pt")["pixel_values"]
        assert got.shape == (1, *tensors[f"pixels_u8/{name}"].shape)
        assert torch.equal(got[0], _pixels(folder, tensors, name)), name


@pytest.mark.parametrize("folder", FIXTURES, ids=lambda p: p.name)
def test_prompt_strings_exact(folder):
    golden, _, _, processor = _load(folder)
    for sample in golden["train_samples"]:
        messages = processor.conversation_to_messages(sample["conversations"], "image" in sample)
        assert processor.apply_chat_template(messages) == golden["cases"]["train_prompts"][sample["id"]]
    inf = golden["cases"]["inference"]
    messages = _inference_messages(folder, inf, with_file=False)
    assert processor.apply_chat_template(messages, add_generation_prompt=True) == inf["prompt"]


@pytest.mark.parametrize("folder", FIXTURES, ids=lambda p: p.name)
def test_training_encoding_exact(folder):
    golden, tensors, _, processor = _load(folder)
    encoded = []
    for sample in golden["train_samples"]:
        enc = processor.encode_conversation(sample["conversations"], "image" in sample)
        for ours, theirs in (("input_ids", "input_ids"), ("labels", "labels"), ("instruct_ids", "instructs")):
            assert enc[ours].tolist() == tensors[f"train/{sample['id']}/{theirs}"].tolist(), (sample["id"], ours)
        encoded.append(enc)
    batch = processor.collate(encoded)
    for ours, theirs in (
        ("input_ids", "input_ids"),
        ("labels", "labels"),
        ("instruct_ids", "instructs"),
        ("attention_mask", "attention_mask"),
    ):
        assert torch.equal(batch[ours], tensors[f"train_batch/{theirs}"]), ours


@pytest.mark.parametrize("folder", FIXTURES, ids=lambda p: p.name)
def test_train_batch_loss_and_logits(folder):
    golden, tensors, model, _ = _load(folder)
    with torch.no_grad():
        out = model(
            input_ids=tensors["train_batch/input_ids"],
            attention_mask=tensors["train_batch/attention_mask"],
            labels=tensors["train_batch/labels"],
            pixel_values=_train_batch(golden, tensors, folder),
            instruct_ids=tensors["train_batch/instructs"],
        )
    expected = tensors["train_batch/logits"]
    assert out.logits.shape == expected.shape
    torch.testing.assert_close(out.logits, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.loss.reshape(1), tensors["train_batch/loss"].reshape(1), atol=ATOL, rtol=0)


def _inference_messages(folder: Path, inf: dict, with_file: bool) -> list[dict]:
    content = [{"type": "text", "text": inf["question"]}]
    if inf.get("image"):
        content.insert(0, {"type": "image", "image": str(folder / inf["image"])} if with_file else {"type": "image"})
    return [{"role": "user", "content": content}]


def _inference_pixels(folder: Path, golden, tensors) -> torch.Tensor | None:
    image = golden["cases"]["inference"].get("image")
    return _pixels(folder, tensors, image)[None] if image else None


@pytest.mark.parametrize("folder", FIXTURES, ids=lambda p: p.name)
def test_inference_inputs_exact(folder):
    golden, tensors, _, processor = _load(folder)
    inf = golden["cases"]["inference"]
    inputs = processor.apply_chat_template(
        _inference_messages(folder, inf, with_file=True), add_generation_prompt=True, tokenize=True
    )
    assert torch.equal(inputs["input_ids"], tensors["inference/input_ids"])
    if inf.get("image"):
        assert torch.equal(inputs["instruct_ids"], tensors["inference/instructs"])
        assert torch.equal(inputs["pixel_values"][0], _pixels(folder, tensors, inf["image"]))


@pytest.mark.parametrize("folder", FIXTURES, ids=lambda p: p.name)
def test_prefill_logits(folder):
    golden, tensors, model, _ = _load(folder)
    with torch.no_grad():
        out = model(
            input_ids=tensors["inference/input_ids"],
            pixel_values=_inference_pixels(folder, golden, tensors),
            instruct_ids=tensors.get("inference/instructs"),
        )
    torch.testing.assert_close(out.logits, tensors["inference/prefill_logits"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("folder", FIXTURES, ids=lambda p: p.name)
def test_generation_scores_and_ids(folder):
    golden, tensors, model, _ = _load(folder)
    ids = tensors["inference/input_ids"]
    expected_ids = tensors["inference/generated_ids"]
    n = expected_ids.shape[1]
    out = model.generate(
        input_ids=ids,
        pixel_values=_inference_pixels(folder, golden, tensors),
        instruct_ids=tensors.get("inference/instructs"),
        do_sample=False,
        max_new_tokens=n,
        min_new_tokens=n,
        output_scores=True,
        return_dict_in_generate=True,
    )
    assert torch.equal(out.sequences[:, : ids.shape[1]], ids)
    assert torch.equal(out.sequences[:, ids.shape[1] :], expected_ids)
    scores = torch.stack(out.scores, dim=1)
    expected = tensors["inference/step_scores"]
    finite = torch.isfinite(expected)
    assert torch.equal(torch.isfinite(scores), finite)
    torch.testing.assert_close(scores[finite], expected[finite], atol=ATOL, rtol=0)
