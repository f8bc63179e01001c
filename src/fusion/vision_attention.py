"""Attention for the text-guided tower without materializing [N+T, N+T] score masks.

Registered with transformers' ``AttentionInterface`` as ``fusion_text_guided``; the tower passes a
:class:`TextGuidedSpec` where an additive mask tensor would go. The reference's early layers make
every text query attend uniformly to its keys, so those rows are a plain mean of the values; the
image rows and the late layers use SDPA with a broadcast key mask, which lets the flash /
memory-efficient kernels run on GPU. A tensor mask (the reference-exact masks) runs on SDPA; an
:class:`EagerMask` runs the reference's own eager attention (scores materialized, then softmax), the
baseline the benchmarks measure the fast path against.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.models.siglip.modeling_siglip import eager_attention_forward

IMPLEMENTATION = "fusion_text_guided"


@dataclass
class TextGuidedSpec:
    """What one tower layer needs to know about its N image + T text tokens."""

    n_img: int
    key_valid: torch.Tensor | None  # [B, N+T] bool (None: every key is valid)
    early: bool  # one of the first E = K // 2 layers
    mode: str  # "reference" | "paper"
    text_extent: torch.Tensor | None = None  # [B] keys the uniform text rows span (None: all N+T)


@dataclass
class EagerMask:
    """An additive mask (or none) for the eager path: explicit scores, mask, softmax, as the reference."""

    mask: torch.Tensor | None


def text_guided_attention(
    module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
):
    """query/key/value [B, H, L, hd] -> ([B, L, H, hd], None), as transformers' attention functions."""
    if isinstance(attention_mask, EagerMask):
        return eager_attention_forward(
            module, query, key, value, attention_mask.mask, scaling=scaling, dropout=dropout, **kwargs
        )
    if not isinstance(attention_mask, TextGuidedSpec):
        # With the reference's masks (whole text rows at the dtype minimum), CUDA's fused SDPA kernels
        # gave outputs 0.63 off the eager path on an H200, the math backend 2e-6; so masked calls on
        # CUDA keep the math backend, which computes softmax(scores + mask) as the reference does.
        exact = query.is_cuda and isinstance(attention_mask, torch.Tensor)  # unmasked calls keep every kernel
        with sdpa_kernel(SDPBackend.MATH) if exact else nullcontext():
            return sdpa_attention_forward(
                module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
            )
    spec = attention_mask
    n = spec.n_img
    key_mask = spec.key_valid[:, None, None, :] if spec.key_valid is not None else None

    def sdpa(q, k, v, mask):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scaling)

    if not spec.early:
        out = sdpa(query, key, value, key_mask)
    elif spec.mode == "reference":
        image = sdpa(query[:, :, :n], key, value, key_mask)
        total = key.shape[2]
        if spec.text_extent is None:
            uniform = value.float().mean(dim=2, keepdim=True)
        else:  # uniform over each sample's own keys (batch-invariant inference)
            extent = spec.text_extent.to(value.device)
            weights = (torch.arange(total, device=value.device)[None, :] < extent[:, None]).float()
            weights = weights / extent[:, None].float()
            uniform = torch.einsum("bk,bhkd->bhd", weights, value.float())[:, :, None]
        text = uniform.to(value.dtype).expand(-1, -1, query.shape[2] - n, -1)
        out = torch.cat([image, text], dim=2)
    else:  # "paper": image queries see image keys only, text queries see image + valid text keys
        image = sdpa(query[:, :, :n], key[:, :, :n], value[:, :, :n], None)
        text = sdpa(query[:, :, n:], key, value, key_mask)
        out = torch.cat([image, text], dim=2)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(IMPLEMENTATION, text_guided_attention)
