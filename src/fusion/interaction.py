"""Context-aware recursive alignment: the interaction layers that run inside the LLM at prefill.

After chosen decoder layers, every latent vision token is refined by cross attention over its own
w x w window of a pooled global image context, guided by the hidden state of its question's last
token. Module and weight names follow the reference (`vision_sampler_layers.k.layers.0.*`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class InteractionInputs:
    """Per-call inputs of the interaction layers (built in ``forward``; never stored on the model).

    vision_positions / query_positions: [B, V] merged-sequence positions of each latent token and of
    the instruction position it is paired with (-1 where a slot is unused); context: [B, q, w*w, D].
    """

    vision_positions: torch.Tensor
    query_positions: torch.Tensor
    context: torch.Tensor
    # Flat indices of the used slots, computed once per forward and shared by every interaction layer
    # (one host sync per call instead of one per layer).
    batch: torch.Tensor = field(init=False)
    window: torch.Tensor = field(init=False)
    vis_pos: torch.Tensor = field(init=False)
    qry_pos: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        batch, slot = (self.vision_positions >= 0).nonzero(as_tuple=True)
        self.batch = batch
        self.window = slot % self.context.shape[1]
        self.vis_pos = self.vision_positions[batch, slot]
        self.qry_pos = self.query_positions[batch, slot]


class CrossAttention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden size {hidden_size} is not divisible by {num_heads} interaction heads")
        self.num_heads = num_heads
        self.q_proj = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, hidden_size, bias=False))
        self.k_proj = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, hidden_size, bias=False))
        self.v_proj = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, hidden_size, bias=False))
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, window: torch.Tensor, batch: torch.Tensor
    ) -> torch.Tensor:
        """x [V, D]; context [B, q, W, D]; each token v attends to context[batch[v], window[v]]."""
        v_tokens, d = x.shape
        h = self.num_heads
        hd = d // h
        # Keys/values once per (sample, window), then gathered per latent token.
        k = self.k_proj(context)[batch, window]  # [V, W, D]
        v = self.v_proj(context)[batch, window]
        q = self.q_proj(x).view(v_tokens, h, 1, hd)
        k = k.view(v_tokens, -1, h, hd).transpose(1, 2)
        v = v.view(v_tokens, -1, h, hd).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(hd)
        return self.o_proj(out.reshape(v_tokens, d))


class ProjOut(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear_1 = nn.Linear(hidden_size, hidden_size, bias=False)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class InteractionLayer(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.proj_in = nn.Linear(2 * hidden_size, hidden_size, bias=False)
        self.proj_context = nn.Linear(hidden_size, hidden_size, bias=False)
        self.cross_attn = CrossAttention(hidden_size, num_heads)
        self.norm = nn.LayerNorm(hidden_size)
        self.proj_out = ProjOut(hidden_size)

    def forward(self, hidden: torch.Tensor, inputs: InteractionInputs) -> torch.Tensor:
        """Returns ``hidden`` with its latent-token positions refined."""
        batch, vis_pos = inputs.batch, inputs.vis_pos
        if batch.numel() == 0:
            return hidden
        image_tokens = hidden[batch, vis_pos]
        queries = hidden[batch, inputs.qry_pos]
        x = self.proj_in(torch.cat([queries, image_tokens], dim=-1))
        context = self.proj_context(inputs.context.to(hidden.dtype))
        attn = self.cross_attn(x, context, inputs.window, batch)
        out = self.proj_out(self.norm(attn + x)) + image_tokens
        return hidden.index_put((batch, vis_pos), out)


class InteractionBlock(nn.Module):
    """Holds one interaction layer under `layers.0` (the reference's weight layout)."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.layers = nn.ModuleList([InteractionLayer(hidden_size, num_heads)])

    def forward(self, hidden: torch.Tensor, inputs: InteractionInputs) -> torch.Tensor:
        for layer in self.layers:
            hidden = layer(hidden, inputs)
        return hidden
