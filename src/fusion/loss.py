"""Dual-supervised semantic mapping loss and the combined training objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .constants import IGNORE_INDEX


def _mean_or_none(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
    """Mean over the masked entries; ``None`` when the set is empty (the term is then left out)."""
    count = mask.sum()
    if int(count.item()) == 0:
        return None
    return (values * mask).sum() / count


def text_mapping_loss(
    text_embeds: torch.Tensor, instruct_features: torch.Tensor, text_valid: torch.Tensor
) -> torch.Tensor | None:
    """1 - cos(embed_tokens(instructs), features of the instructs after the tower + projector)."""
    cos = F.cosine_similarity(text_embeds.float(), instruct_features.float(), dim=-1)
    return _mean_or_none(1 - cos, text_valid.float())


def vision_mapping_loss(patch_embeds: torch.Tensor, mapped_back: torch.Tensor) -> torch.Tensor | None:
    """1 - cos(tower embedding output, aux_projector(projected image tokens)), over all B*N tokens."""
    cos = F.cosine_similarity(patch_embeds.float(), mapped_back.float(), dim=-1)
    return _mean_or_none(1 - cos, torch.ones_like(cos))


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
    """Next-token cross-entropy, mean over labels != -100."""
    shift_logits = logits[:, :-1].float().reshape(-1, logits.shape[-1])
    shift_labels = labels[:, 1:].reshape(-1)
    valid = shift_labels != IGNORE_INDEX
    if int(valid.sum().item()) == 0:
        return None
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX)
