"""Tiny base models and a tiny drawn dataset for training tests (nothing downloaded)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from transformers import LlamaConfig, LlamaForCausalLM, SiglipVisionConfig, SiglipVisionModel

from fusion.tiny import build_tokenizer

COLORS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (230, 210, 20)}


def make_base_models(root: Path) -> tuple[Path, Path]:
    """A 2-layer Llama with the tiny tokenizer and a 3-layer SigLIP tower at 32 px."""
    torch.manual_seed(0)
    tok = build_tokenizer("llama")
    llm_dir, tower_dir = root / "base-llm", root / "base-tower"
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(llm_dir)
    tok.save_pretrained(llm_dir)
    vcfg = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, patch_size=8, image_size=32
    )
    SiglipVisionModel(vcfg).save_pretrained(tower_dir)
    return llm_dir, tower_dir


def make_dataset(
    root: Path, n: int = 32, seed: int = 0, bad: int = 0, text_only: int = 0, name: str = "data.json"
) -> tuple[Path, Path]:
    """Images of one colored square each, with a one-word color QA; `bad` samples point at broken
    images; `text_only` samples have no image."""
    rng = random.Random(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        color = rng.choice(sorted(COLORS))
        img = Image.new("RGB", (48, 40), "white")
        ImageDraw.Draw(img).rectangle((8, 6, 40, 34), fill=COLORS[color])
        img.save(images / f"{i}.png")
        records.append(
            {
                "id": f"s{i}",
                "image": f"{i}.png",
                "conversations": [
                    {"from": "human", "value": "<image>\nWhat color is the square?"},
                    {"from": "gpt", "value": color.capitalize() + "."},
                ],
            }
        )
    for j in range(bad):
        (images / f"bad{j}.png").write_bytes(b"broken")
        records.append({"id": f"bad{j}", "image": f"bad{j}.png", "conversations": records[0]["conversations"]})
    for j in range(text_only):
        color = rng.choice(sorted(COLORS))
        records.append(
            {
                "id": f"t{j}",
                "conversations": [
                    {"from": "human", "value": f"Name a color like {color}."},
                    {"from": "gpt", "value": color.capitalize() + "."},
                ],
            }
        )
    data = root / name
    data.write_text(json.dumps(records))
    return data, images
