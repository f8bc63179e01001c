"""Text-guided unified vision encoding on a SigLIP / fixed-resolution SigLIP2 tower.

The tower is transformers' own ``SiglipVisionModel`` (weights under
``vision_tower.vision_model.*``); we drive its embedding and encoder layers one by one because
FUSION needs (a) instruction tokens appended to the patch tokens, (b) a different attention mask in
the first E = K // 2 layers, and (c) every layer's hidden states for the feature connector.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel

from .vision_attention import IMPLEMENTATION, EagerMask, TextGuidedSpec


class _SiglipHolder(nn.Module):
    """Keeps the reference weight prefix `vision_tower.vision_model.*` around transformers' tower."""

    def __init__(self, config: SiglipVisionConfig):
        super().__init__()
        self.vision_model = SiglipVisionModel(config)


class FusionVisionTower(nn.Module):
    """Encodes images with (item 4) or without (items 0-3) instruction tokens.

    ``text_mask`` selects the early-layer attention: ``"reference"`` reproduces the released
    checkpoints (text queries attend uniformly to every key); ``"paper"`` keeps image queries from
    seeing text in the early layers, as the paper describes.
    """

    def __init__(self, config: SiglipVisionConfig, text_mask: str = "reference", attention: str = "fused"):
        super().__init__()
        if text_mask not in ("reference", "paper"):
            raise ValueError(f"vision_text_mask must be 'reference' or 'paper', got {text_mask!r}")
        if attention not in ("fused", "masked", "eager"):
            raise ValueError(f"vision_attention must be 'fused', 'masked' or 'eager', got {attention!r}")
        self.text_mask = text_mask
        self.attention = attention
        config._attn_implementation = IMPLEMENTATION  # every path: a spec, a mask tensor or an EagerMask
        self.vision_tower = _SiglipHolder(config)
        self.num_layers = config.num_hidden_layers
        self.early_layers = self.num_layers // 2

    @property
    def config(self) -> SiglipVisionConfig:
        return self.vision_tower.vision_model.config

    @property
    def num_patches(self) -> int:
        return (self.config.image_size // self.config.patch_size) ** 2

    def _masks(
        self, text_valid: torch.Tensor, n_img: int, dtype: torch.dtype, text_lengths: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Additive masks [B, 1, N+T, N+T] for the early and the late layers.

        Padded instruction tokens (id 0) are hidden as keys. With ``text_lengths`` the uniform
        early text rows stop at each sample's own length (what the reference computes for a batch
        of one), instead of spanning the batch's padding too (what it computes for a padded batch).
        """
        b, t = text_valid.shape
        device = text_valid.device
        min_value = torch.finfo(dtype).min
        key_valid = torch.cat([torch.ones(b, n_img, dtype=torch.bool, device=device), text_valid], dim=1)
        late = torch.zeros(b, 1, n_img + t, n_img + t, dtype=dtype, device=device)
        late = late.masked_fill(~key_valid[:, None, None, :], min_value)
        early = late.clone()
        if self.text_mask == "reference":
            # Text queries: every score replaced by the dtype minimum -> uniform over the keys.
            early[:, :, n_img:, :] = min_value
            if text_lengths is not None:
                beyond = torch.arange(n_img + t, device=device)[None, :] >= (n_img + text_lengths)[:, None]
                rows = early[:, :, n_img:, :]
                early[:, :, n_img:, :] = rows.masked_fill(beyond[:, None, None, :], float("-inf"))
        else:
            early[:, :, :n_img, n_img:] = min_value  # image queries do not see text early on
        return early, late

    def forward(
        self,
        pixel_values: torch.Tensor,
        text_embeds: torch.Tensor | None = None,
        text_valid: torch.Tensor | None = None,
        text_lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (connector features [B, N+T, 3*D_v], embedding output h_0 [B, N+T, D_v]).

        Connector: concat(h_K, mean(h_0..h_{E-1}), mean(h_E..h_{2E-1})).
        """
        vm = self.vision_tower.vision_model
        hidden = vm.embeddings(pixel_values)
        n_img = hidden.shape[1]
        early_mask = late_mask = None
        if text_embeds is not None:
            hidden = torch.cat([hidden, text_embeds.to(hidden.dtype)], dim=1)
            if self.attention != "fused":  # the reference's own formulation, kept as the exact baseline
                early_mask, late_mask = self._masks(text_valid, n_img, hidden.dtype, text_lengths)
            else:
                ones = torch.ones(text_valid.shape[0], n_img, dtype=torch.bool, device=text_valid.device)
                key_valid = torch.cat([ones, text_valid], dim=1)
                extent = n_img + text_lengths if text_lengths is not None else None
                early_mask = TextGuidedSpec(n_img, key_valid, True, self.text_mask, extent)
                late_mask = TextGuidedSpec(n_img, key_valid, False, self.text_mask)
        if self.attention == "eager":
            early_mask, late_mask = EagerMask(early_mask), EagerMask(late_mask)
        h0 = hidden
        e = self.early_layers
        sum_a = torch.zeros_like(hidden)
        sum_b = torch.zeros_like(hidden)
        for i, layer in enumerate(vm.encoder.layers):
            if i < e:
                sum_a = sum_a + hidden
            elif i < 2 * e:
                sum_b = sum_b + hidden
            hidden = layer(hidden, early_mask if i < e else late_mask)
        features = torch.cat([hidden, sum_a / e, sum_b / e], dim=-1)
        return features, h0
