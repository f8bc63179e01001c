"""The merged sequence: placeholders in `input_ids` replaced by image / latent tokens.

Built with tensor operations over the whole batch (no per-token or per-sample Python loops), so
the same code serves training (right padding, labels with instruction marks) and batched
generation (left padding).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from .constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX, INSTRUCT_INDEX, LATENT_IMAGE_TOKEN_INDEX

logger = logging.getLogger(__name__)


@dataclass
class MergedInputs:
    inputs_embeds: torch.Tensor  # [B, M, D]
    attention_mask: torch.Tensor  # [B, M] long
    position_ids: torch.Tensor  # [B, M]
    labels: torch.Tensor | None  # [B, M]
    vision_positions: torch.Tensor  # [B, V] (-1 unused): latent tokens refined by interaction layers
    query_positions: torch.Tensor  # [B, V] instruction position paired with each latent token


def _rank_within_rows(rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    """For a row-sorted 1-D index tensor, the position of each entry inside its row."""
    counts = torch.bincount(rows, minlength=num_rows)
    starts = counts.cumsum(0) - counts
    return torch.arange(rows.numel(), device=rows.device) - starts[rows]


def _pad_table(rows: torch.Tensor, rank: torch.Tensor, values: torch.Tensor, num_rows: int) -> torch.Tensor:
    width = int(rank.max().item()) + 1 if rank.numel() else 0
    table = torch.full((num_rows, width), -1, dtype=torch.long, device=values.device)
    table[rows, rank] = values
    return table


def merge_sequence(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor | None,
    embed_tokens: nn.Module,
    image_features: torch.Tensor,
    latents: torch.Tensor,
    max_length: int | None,
    padding_side: str = "right",
) -> MergedInputs:
    """Splices image and latent tokens into the text embeddings, as the reference does.

    Placeholders (-200 / -300) are filled in order of position: in a sample with an image (any
    -200) the first gets the N image tokens and every later one q latent tokens; without an image
    each gets q zero vectors. Those q-token groups are the vision positions; tokens labelled -400
    (or, without labels, each sample's last token) are the instruction positions.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    bsz, _ = input_ids.shape
    device = input_ids.device
    valid = attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)
    is_ph = ((input_ids == IMAGE_TOKEN_INDEX) | (input_ids == LATENT_IMAGE_TOKEN_INDEX)) & valid
    has_image = ((input_ids == IMAGE_TOKEN_INDEX) & valid).any(dim=1)
    is_first = is_ph & (is_ph.long().cumsum(dim=1) == 1) & has_image[:, None]
    n_img, q = image_features.shape[1], latents.shape[1]
    lens = torch.where(is_first, n_img, torch.where(is_ph, q, 1)) * valid

    # One entry per output position, over the flattened batch.
    tok_b, tok_i = valid.nonzero(as_tuple=True)
    tok_len = lens[tok_b, tok_i]
    total = int(tok_len.sum().item())
    src = torch.repeat_interleave(torch.arange(tok_b.numel(), device=device), tok_len, output_size=total)
    out_index = torch.arange(total, device=device)
    offset = out_index - (tok_len.cumsum(0) - tok_len)[src]
    b, i = tok_b[src], tok_i[src]
    sample_len = lens.sum(dim=1)
    pos = out_index - (sample_len.cumsum(0) - sample_len)[b]

    limit = max_length if max_length else int(sample_len.max().item())
    if bool((sample_len > limit).any()):
        logger.warning("merged sequence of %d tokens truncated to %d", int(sample_len.max()), limit)
    keep = pos < limit
    b, i, pos, offset = b[keep], i[keep], pos[keep], offset[keep]
    kept_len = sample_len.clamp(max=limit)
    width = int(kept_len.max().item()) if bsz else 0
    pad = (width - kept_len) if padding_side == "left" else torch.zeros_like(kept_len)
    col = pos + pad[b]

    kind_ph = is_ph[b, i]
    kind_img = is_first[b, i]
    kind_lat = kind_ph & ~kind_img
    dim = image_features.shape[-1]
    dtype = image_features.dtype
    embeds = torch.zeros(bsz, width, dim, dtype=dtype, device=device)
    text = ~kind_ph
    embeds[b[text], col[text]] = embed_tokens(input_ids[b[text], i[text]]).to(dtype)
    embeds[b[kind_img], col[kind_img]] = image_features[b[kind_img], offset[kind_img]]
    lat_vals = latents[b[kind_lat], offset[kind_lat]] * has_image[b[kind_lat], None].to(dtype)
    embeds[b[kind_lat], col[kind_lat]] = lat_vals

    mask = torch.zeros(bsz, width, dtype=torch.long, device=device)
    mask[b, col] = 1
    # Valid tokens count from 0; right padding continues the count (as the reference's default
    # position ids do), left padding gets 0.
    position_ids = (torch.arange(width, device=device)[None, :] - pad[:, None]).clamp(min=0)

    merged_labels = None
    if labels is not None:
        merged_labels = torch.full((bsz, width), IGNORE_INDEX, dtype=labels.dtype, device=device)
        text_labels = labels[b[text], i[text]]
        merged_labels[b[text], col[text]] = text_labels.masked_fill(text_labels == INSTRUCT_INDEX, IGNORE_INDEX)
        is_instr = text & (labels[b, i] == INSTRUCT_INDEX)
        instr_b, instr_col = b[is_instr], col[is_instr]
    else:
        instr_b = torch.arange(bsz, device=device)
        instr_col = pad + kept_len - 1
        has_tokens = kept_len > 0
        instr_b, instr_col = instr_b[has_tokens], instr_col[has_tokens]
    instr_table = _pad_table(instr_b, _rank_within_rows(instr_b, bsz), instr_col, bsz)
    n_instr = torch.bincount(instr_b, minlength=bsz)

    # Latent tokens in order; group g (q tokens) pairs with instruction g, extra groups are dropped.
    vis_b, vis_col = b[kind_lat], col[kind_lat]
    vis_rank = _rank_within_rows(vis_b, bsz)
    group = torch.div(vis_rank, q, rounding_mode="floor")
    paired = group < n_instr[vis_b]
    vis_b, vis_col, vis_rank, group = vis_b[paired], vis_col[paired], vis_rank[paired], group[paired]
    vision_positions = _pad_table(vis_b, vis_rank, vis_col, bsz)
    query_positions = torch.full_like(vision_positions, -1)
    query_positions[vis_b, vis_rank] = instr_table[vis_b, group]
    return MergedInputs(embeds, mask, position_ids, merged_labels, vision_positions, query_positions)
