"""Projectors between the vision width D_v and the LLM width D (`mm_projector`, `aux_projector`)."""

from __future__ import annotations

import re

from torch import nn


def build_projector(projector_type: str, in_features: int, out_features: int) -> nn.Module:
    """`linear` or `mlp{N}x_gelu` (Linear, then N-1 x (GELU, Linear)), as the reference names them.

    Module indices follow nn.Sequential so that the reference weight names (`.0`, `.2`, ...) load.
    """
    if projector_type == "linear":
        return nn.Linear(in_features, out_features)
    match = re.fullmatch(r"mlp(\d+)x_gelu", projector_type)
    if match is None:
        raise ValueError(f"unknown mm_projector_type {projector_type!r} (expected 'linear' or 'mlpNx_gelu')")
    layers: list[nn.Module] = [nn.Linear(in_features, out_features)]
    for _ in range(int(match.group(1)) - 1):
        layers += [nn.GELU(), nn.Linear(out_features, out_features)]
    return nn.Sequential(*layers)
