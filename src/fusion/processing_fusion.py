"""FusionProcessor: tokenizer + static_hd image processor + FUSION chat templates.

Produces exactly the reference's model inputs: prompt ids with -200 / -300 placeholders,
instruction ids for text guidance, and for training the labels with -100 over prompts and -400
on the last token before each answer.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase
from transformers.image_processing_base import BatchFeature

from .chat_templates import get_template, jinja_template
from .configuration_fusion import TEMPLATE_BY_MODEL_TYPE, resolve_vision_config
from .constants import (
    IGNORE_INDEX,
    IMAGE_TOKEN,
    IMAGE_TOKEN_INDEX,
    INSTRUCT_INDEX,
    LATENT_IMAGE_TOKEN,
    LATENT_IMAGE_TOKEN_INDEX,
)
from .image_processing_fusion import FusionImageProcessor, ImageLike

PROCESSOR_CONFIG = "processor_config.json"
_PLACEHOLDERS = {IMAGE_TOKEN: IMAGE_TOKEN_INDEX, LATENT_IMAGE_TOKEN: LATENT_IMAGE_TOKEN_INDEX}
_SPLIT = re.compile(f"({re.escape(IMAGE_TOKEN)}|{re.escape(LATENT_IMAGE_TOKEN)})")
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


class ConversationError(ValueError):
    """A training conversation is malformed or its labels cannot be aligned with its tokens."""


def _text_of(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def _images_of(content: str | list[dict[str, Any]]) -> list[Any]:
    if isinstance(content, str):
        return []
    found = []
    for part in content:
        if part.get("type") == "image":
            found.append(part.get("image", part.get("url", part.get("path"))))
        elif part.get("type") == "image_url":
            url = part.get("image_url")
            found.append(url.get("url") if isinstance(url, dict) else url)
    return found


class FusionProcessor:
    """Turns chats, images and LLaVA-format conversations into FUSION model inputs."""

    def __init__(
        self,
        image_processor: FusionImageProcessor,
        tokenizer: PreTrainedTokenizerBase,
        chat_template_name: str = "phi_3",
        use_im_start_end: bool = True,
        system_prompt: str | None = None,
    ):
        """``system_prompt`` replaces the family's default system turn (the released checkpoints use the
        default; a model trained from scratch may choose its own, e.g. a shorter one)."""
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.template = get_template(chat_template_name)
        if system_prompt is not None:
            self.template = replace(self.template, default_system=system_prompt)
        self.use_im_start_end = use_im_start_end
        self.chat_template = jinja_template(self.template, use_im_start_end)

    # ----- loading / saving -------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs: Any) -> FusionProcessor:
        """Reads a FUSION checkpoint folder (reference layout or ours); nothing is downloaded."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"no checkpoint folder at {path}")
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, **kwargs)
        saved = {}
        if (path / PROCESSOR_CONFIG).is_file():
            saved = json.loads((path / PROCESSOR_CONFIG).read_text(encoding="utf-8"))
        if (path / "preprocessor_config.json").is_file():
            image_processor = FusionImageProcessor.from_pretrained(path, local_files_only=True)
        else:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
            vision = resolve_vision_config(config, path)
            image_processor = FusionImageProcessor(
                image_size=vision["image_size"], image_aspect_ratio=getattr(config, "image_aspect_ratio", "static_hd")
            )
        if "chat_template_name" not in saved or "use_im_start_end" not in saved:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
            name = getattr(config, "chat_template", None) or TEMPLATE_BY_MODEL_TYPE.get(config.model_type)
            if name is None:
                raise ValueError(f"cannot choose a chat template for model type {config.model_type!r}")
            saved.setdefault("chat_template_name", name)
            saved.setdefault("use_im_start_end", bool(getattr(config, "mm_use_im_start_end", True)))
        return cls(
            image_processor,
            tokenizer,
            saved["chat_template_name"],
            saved["use_im_start_end"],
            saved.get("system_prompt"),
        )

    def save_pretrained(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(path)
        self.image_processor.save_pretrained(path)
        cfg = {
            "processor_class": type(self).__name__,
            "chat_template_name": self.template.name,
            "use_im_start_end": self.use_im_start_end,
            "chat_template": self.chat_template,
        }
        if self.template != get_template(self.template.name):
            cfg["system_prompt"] = self.template.default_system
        (path / PROCESSOR_CONFIG).write_text(json.dumps(cfg, indent=2), encoding="utf-8")

    # ----- text -------------------------------------------------------------------------------
    def tokenize_prompt(self, prompt: str) -> list[int]:
        """Token ids of a rendered prompt, with -200 / -300 for the image / latent markers (BOS first
        when the tokenizer adds one). Chunks between markers are tokenized separately, as the reference does."""
        ids = list(self.tokenizer("", add_special_tokens=True).input_ids)
        for chunk in _SPLIT.split(prompt):
            if chunk in _PLACEHOLDERS:
                ids.append(_PLACEHOLDERS[chunk])
            elif chunk:
                ids.extend(self.tokenizer(chunk, add_special_tokens=False).input_ids)
        return ids

    def tokenize_instruction(self, text: str) -> list[int]:
        """Instruction ids for text guidance: the question without image markers, with BOS."""
        return list(self.tokenizer(text.replace(IMAGE_TOKEN, "").strip()).input_ids)

    def render(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(
            list(messages),
            chat_template=self.chat_template,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )

    def apply_chat_template(
        self,
        messages: Sequence[dict[str, Any]],
        add_generation_prompt: bool = False,
        tokenize: bool = False,
        return_tensors: str | None = "pt",
        images: Sequence[ImageLike] | None = None,
        **kwargs: Any,
    ) -> str | BatchFeature:
        """HF-style messages -> the reference prompt string, or (``tokenize=True``) model inputs:
        ``input_ids``, ``attention_mask``, ``instruct_ids`` (the last user question) and
        ``pixel_values`` (from ``images`` or the messages' image parts)."""
        prompt = self.render(messages, add_generation_prompt)
        if not tokenize:
            return prompt
        found = [img for m in messages for img in _images_of(m.get("content", ""))]
        images = list(images) if images is not None else [img for img in found if img is not None]
        question = next((_text_of(m["content"]) for m in reversed(messages) if m["role"] == "user"), "")
        return self(text=prompt, images=images or None, questions=question, return_tensors=return_tensors)

    def __call__(
        self,
        text: str | Sequence[str],
        images: ImageLike | Sequence[ImageLike] | None = None,
        questions: str | Sequence[str] | None = None,
        padding_side: str = "left",
        return_tensors: str | None = "pt",
    ) -> BatchFeature:
        """Rendered prompt(s) -> padded ``input_ids``/``attention_mask``, ``instruct_ids`` from
        ``questions`` (one per prompt; ``[0]`` for a prompt without an image), ``pixel_values``."""
        prompts = [text] if isinstance(text, str) else list(text)
        if questions is None:
            questions = [""] * len(prompts)
        questions = [questions] if isinstance(questions, str) else list(questions)
        if len(questions) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(questions)} questions")
        ids = [self.tokenize_prompt(p) for p in prompts]
        if images is not None and not isinstance(images, (list, tuple)):
            images = [images]
        if images is not None and len(images) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(images)} images (use None for a prompt without one)")
        instructs = []
        for i, (p, qtext) in enumerate(zip(ids, questions, strict=False)):
            has_image = IMAGE_TOKEN_INDEX in p
            if images is None and has_image:
                raise ValueError(f"prompt {i} has an image marker but no image was given")
            if images is not None and (images[i] is not None) != has_image:
                raise ValueError(
                    f"prompt {i} {'has' if has_image else 'has no'} image marker but "
                    f"{'no image' if images[i] is None else 'an image'} was given"
                )
            instructs.append(self.tokenize_instruction(qtext) if has_image else [0])
        pad_id = self.pad_token_id
        data: dict[str, Any] = {
            "input_ids": _pad(ids, pad_id, padding_side),
            "attention_mask": _pad([[1] * len(x) for x in ids], 0, padding_side),
            "instruct_ids": _pad(instructs, 0, "right"),
        }
        if images is not None and any(img is not None for img in images):
            data["pixel_values"] = self.image_processor(list(images), return_tensors="pt")["pixel_values"]
        return BatchFeature(data, tensor_type=return_tensors)

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)

    # ----- training ---------------------------------------------------------------------------
    def conversation_to_messages(self, conversations: Sequence[dict[str, str]], has_image: bool) -> list[dict]:
        """LLaVA turns ({"from", "value"}) -> HF messages, with the image marker on the first user turn."""
        if not conversations:
            raise ConversationError("empty conversation")
        messages = []
        for n, turn in enumerate(conversations):
            if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
                raise ConversationError(f"turn {n} is not a {{'from', 'value'}} object: {turn!r}")
            role = _ROLES.get(turn["from"])
            if role is None:
                raise ConversationError(f"turn {n} has unknown role {turn['from']!r}")
            if not isinstance(turn["value"], str):
                raise ConversationError(f"turn {n} value is not a string")
            messages.append({"role": role, "content": turn["value"]})
        users = [m for m in messages if m["role"] == "user"]
        if not users or not any(m["role"] == "assistant" for m in messages):
            raise ConversationError("a conversation needs at least one user and one assistant turn")
        marked = [m for m in messages if IMAGE_TOKEN in m["content"]]
        if marked and not has_image:
            raise ConversationError("the conversation mentions <image> but the sample has no image")
        if has_image:
            for m in marked:
                m["content"] = m["content"].replace(IMAGE_TOKEN, "").strip()
            users[0]["content"] = IMAGE_TOKEN + users[0]["content"]
        return messages

    def encode_conversation(self, conversations: Sequence[dict[str, str]], has_image: bool) -> dict[str, torch.Tensor]:
        """``input_ids``, ``labels`` and ``instruct_ids`` of one training sample, as the reference builds them.

        Answers (with their end-of-turn token) are labelled, everything else is -100, and the last
        token before each answer is -400. Labels are aligned by tokenizing each prefix of the
        conversation; if a prefix does not tokenize to a prefix of the whole, :class:`ConversationError`.
        """
        messages = self.conversation_to_messages(conversations, has_image)
        full = self.render(messages)
        input_ids = self.tokenize_prompt(full)
        labels = [IGNORE_INDEX] * len(input_ids)
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = self.tokenize_prompt(self.render(messages[:i], add_generation_prompt=True))
            upto = self.tokenize_prompt(self.render(messages[: i + 1]))
            if input_ids[: len(before)] != before or input_ids[: len(upto)] != upto or len(upto) <= len(before):
                raise ConversationError(f"labels of turn {i} cannot be aligned with the tokenized conversation")
            labels[len(before) : len(upto)] = input_ids[len(before) : len(upto)]
            labels[len(before) - 1] = INSTRUCT_INDEX
        if has_image:
            questions = "".join(m["content"].replace(IMAGE_TOKEN, "").strip() for m in messages if m["role"] == "user")
            instructs = list(self.tokenizer(questions).input_ids)
        else:
            instructs = [0]
        return {
            "input_ids": torch.tensor(input_ids),
            "labels": torch.tensor(labels),
            "instruct_ids": torch.tensor(instructs),
        }

    def collate(
        self, samples: Sequence[dict[str, torch.Tensor]], padding_side: str = "right"
    ) -> dict[str, torch.Tensor]:
        """Pads encoded samples into a batch (input pad id, -100 labels, 0 instructions)."""
        ids = [s["input_ids"].tolist() for s in samples]
        batch = {
            "input_ids": torch.tensor(_pad(ids, self.pad_token_id, padding_side)),
            "attention_mask": torch.tensor(_pad([[1] * len(x) for x in ids], 0, padding_side)),
            "instruct_ids": torch.tensor(_pad([s["instruct_ids"].tolist() for s in samples], 0, "right")),
        }
        if all("labels" in s for s in samples):
            batch["labels"] = torch.tensor(_pad([s["labels"].tolist() for s in samples], IGNORE_INDEX, padding_side))
        if any("pixel_values" in s for s in samples):
            s = self.image_processor.image_size
            batch["pixel_values"] = torch.stack([x.get("pixel_values", torch.zeros(5, 3, s, s)) for x in samples])
        return batch

    # ----- decoding ---------------------------------------------------------------------------
    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True, **kwargs: Any) -> str:
        """Decodes token ids, dropping image / latent placeholders."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return self.tokenizer.decode([i for i in ids if i >= 0], skip_special_tokens=skip_special_tokens, **kwargs)

    def batch_decode(self, sequences: Sequence[Sequence[int]] | torch.Tensor, **kwargs: Any) -> list[str]:
        return [self.decode(s, **kwargs) for s in sequences]


def _pad(rows: Sequence[Sequence[int]], value: int, side: str) -> list[list[int]]:
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', got {side!r}")
    width = max((len(r) for r in rows), default=0)
    return [
        ([value] * (width - len(r)) + list(r)) if side == "left" else (list(r) + [value] * (width - len(r)))
        for r in rows
    ]
