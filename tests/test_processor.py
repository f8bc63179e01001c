"""Processor behaviour beyond the fixtures: templates, conversation errors, image errors."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from fusion.image_processing_fusion import FusionImageProcessor, ImageLoadError
from fusion.processing_fusion import ConversationError, FusionProcessor


def _png(size=(40, 30), color=(10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_static_hd_layout_and_values():
    proc = FusionImageProcessor(image_size=8)
    img = Image.new("RGB", (16, 16))
    for x in range(16):
        for y in range(16):
            img.putpixel((x, y), (255 if x >= 8 else 0, 255 if y >= 8 else 0, 0))
    px = proc([img, None], return_tensors="pt")["pixel_values"]
    assert px.shape == (2, 5, 3, 8, 8)
    # Tiles row-major: TL (r=0,g=0), TR (r=1), BL (g=1), BR (r=1,g=1); values x/127.5 - 1.
    assert px[0, 0, 0].max() == -1 and px[0, 1, 0].min() == 1 and px[0, 2, 1].min() == 1
    assert px[0, 3, :2].min() == 1 and px[0, 3, 2].max() == -1
    assert torch.equal(px[1], torch.zeros(5, 3, 8, 8))


def test_image_errors_are_clear():
    proc = FusionImageProcessor(image_size=8)
    with pytest.raises(ImageLoadError, match="cannot read image"):
        proc([b"not an image at all"])
    truncated = _png()[:60]
    with pytest.raises(ImageLoadError):
        proc([truncated])
    with pytest.raises(ImageLoadError, match="more than the limit"):
        FusionImageProcessor(image_size=8, max_pixels=100)([_png()])
    assert proc([_png()])["pixel_values"].shape == (1, 5, 3, 8, 8)


def test_conversation_errors(tiny_llama):
    _, processor = tiny_llama
    with pytest.raises(ConversationError, match="unknown role"):
        processor.encode_conversation([{"from": "robot", "value": "hi"}, {"from": "gpt", "value": "x"}], False)
    with pytest.raises(ConversationError, match="no image"):
        processor.encode_conversation([{"from": "human", "value": "<image>\nhi"}, {"from": "gpt", "value": "x"}], False)
    with pytest.raises(ConversationError, match="assistant"):
        processor.encode_conversation([{"from": "human", "value": "hi"}], False)
    with pytest.raises(ConversationError, match="empty"):
        processor.encode_conversation([], False)
    with pytest.raises(ConversationError, match="not a"):
        processor.encode_conversation(["hello"], False)


def test_image_marker_moves_to_first_turn(tiny_llama):
    _, processor = tiny_llama
    conv = [
        {"from": "human", "value": "First?"},
        {"from": "gpt", "value": "One."},
        {"from": "human", "value": "Second? <image>"},
        {"from": "gpt", "value": "Two."},
    ]
    enc = processor.encode_conversation(conv, has_image=True)
    ids = enc["input_ids"].tolist()
    assert ids.count(-200) == 1 and ids.count(-300) == 2
    assert ids.index(-300) < ids.index(-200) < ids.index(-300, ids.index(-300) + 1)
    assert processor.tokenizer.decode(enc["instruct_ids"], skip_special_tokens=True) == "First?Second?"
    assert enc["labels"].tolist().count(-400) == 2


def test_a_custom_system_prompt_is_saved_used_and_reloaded(tiny_llama, tmp_path):
    """A checkpoint's own system turn replaces the family default in every prompt, survives
    save/load (chat, serve and eval read it from the folder), and the default is not written out."""
    _, processor = tiny_llama
    messages = [{"role": "user", "content": "What is it?"}]
    default = processor.render(messages, add_generation_prompt=True)
    assert processor.template.default_system in default
    custom = FusionProcessor(processor.image_processor, processor.tokenizer, "llama_3", system_prompt="Be brief.")
    custom.save_pretrained(tmp_path / "custom")
    processor.save_pretrained(tmp_path / "default")
    for loaded in (custom, FusionProcessor.from_pretrained(tmp_path / "custom")):
        prompt = loaded.render(messages, add_generation_prompt=True)
        assert "Be brief.<|eot_id|>" in prompt and processor.template.default_system not in prompt
        assert prompt == default.replace(processor.template.default_system, "Be brief.")
    assert "system_prompt" not in (tmp_path / "default" / "processor_config.json").read_text()
    reloaded = FusionProcessor.from_pretrained(tmp_path / "default")
    assert reloaded.render(messages, add_generation_prompt=True) == default


def test_unalignable_labels_raise():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Split("\u0000", "isolated")  # no pre-splitting: merges cross newlines
    specials = ["<s>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>", "<vision_start>", "<vision_end>"]
    tok.train_from_iterator(
        ["\n\nhello\n\nhello\n\n"] * 50, trainers.BpeTrainer(vocab_size=60, special_tokens=specials)
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>", pad_token="<|end|>")
    processor = FusionProcessor(FusionImageProcessor(image_size=8), fast, "phi_3")
    # The generation prompt ends with "\n" and the answer starts with "\n": one merged token spans both.
    with pytest.raises(ConversationError, match="cannot be aligned"):
        processor.encode_conversation([{"from": "human", "value": "hello"}, {"from": "gpt", "value": "\nhello"}], False)
    ok = processor.encode_conversation([{"from": "human", "value": "hello"}, {"from": "gpt", "value": "hello"}], False)
    assert ok["labels"].tolist().count(-400) == 1


def test_processor_call_validates_images_against_markers(tiny_llama):
    _, processor = tiny_llama
    prompt = processor.apply_chat_template([{"role": "user", "content": "<image>\nWhat?"}], add_generation_prompt=True)
    with pytest.raises(ValueError, match="no image"):
        processor(text=[prompt], images=[None], questions=["What?"])
    with pytest.raises(ValueError, match="2 images"):
        processor(text=[prompt], images=[_png(), _png()], questions=["What?"])
    out = processor(text=[prompt], images=[_png()], questions=["What?"])
    assert out["input_ids"][0].tolist().count(-200) == 1 and out["pixel_values"].shape[:2] == (1, 5)


def test_decode_drops_placeholders(tiny_llama):
    _, processor = tiny_llama
    ids = processor.tokenizer("hello", add_special_tokens=False).input_ids
    assert processor.decode([-300, -200, *ids]) == "hello"


def test_image_processor_from_pretrained_takes_option_overrides():
    """Keyword options given to from_pretrained override the saved ones (transformers routes them
    through ``valid_kwargs``); the processor then tiles at the new size."""
    from fusion.tiny import EMBEDDED_CHECKPOINT

    saved = FusionImageProcessor.from_pretrained(EMBEDDED_CHECKPOINT)
    small = FusionImageProcessor.from_pretrained(EMBEDDED_CHECKPOINT, image_size=32)
    assert saved.image_size == 128 and small.image_size == 32
    image = Image.new("RGB", (50, 40), "red")
    assert tuple(small(images=[image], return_tensors="pt")["pixel_values"].shape) == (1, 5, 3, 32, 32)
