"""A tiny random diffusers text-to-image pipeline, built from configs (no download), through the backend."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from fusion.synth.images import DiffusersBackend
from fusion.tiny import build_tokenizer


def _tiny_pipeline() -> StableDiffusionPipeline:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=32,
    )
    tokenizer = build_tokenizer("llama")
    tokenizer.model_max_length = 16
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
        )
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def test_tiny_diffusers_pipeline_makes_one_image():
    backend = DiffusersBackend(_tiny_pipeline(), steps=2, guidance_scale=1.0, width=32, height=32)
    image = backend.generate("a red square on a white table", seed=3)
    again = backend.generate("a red square on a white table", seed=3)
    assert image.size == (32, 32) and image.mode == "RGB"
    assert image.tobytes() == again.tobytes()  # seeded: the same description gives the same image
    assert image.getcolors(maxcolors=10**6) is None or len(image.getcolors(maxcolors=10**6)) > 1
