"""FUSION for causal LM: a SigLIP tower, projectors and interaction layers around a HF decoder.

The decoder is transformers' own model class (Phi-3, Llama, Qwen2), used through its public
forward: we hand it merged ``inputs_embeds`` and refine latent tokens with forward hooks on the
chosen decoder layers. The hooks read their per-call inputs from the ``fusion_interaction`` kwarg
that transformers passes to every decoder layer, so nothing is stored on the model between calls
and concurrent calls cannot interfere.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    LlamaForCausalLM,
    LlamaModel,
    Phi3ForCausalLM,
    Phi3Model,
    PreTrainedModel,
    Qwen2ForCausalLM,
    Qwen2Model,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_fusion import (
    FusionConfig,
    FusionLlamaConfig,
    FusionPhiConfig,
    FusionQwen2Config,
    build_vision_config,
    resolve_vision_config,
)
from .constants import IMAGE_TOKEN_INDEX
from .interaction import InteractionBlock, InteractionInputs
from .loss import causal_lm_loss, text_mapping_loss, vision_mapping_loss
from .merge import MergedInputs, merge_sequence
from .projector import build_projector
from .vision import FusionVisionTower

# Modules kept out of 4/8-bit quantization (precision-sensitive and small).
FUSION_UNQUANTIZED_MODULES = ["vision_tower", "mm_projector", "aux_projector", "vision_sampler_layers", "lm_head"]

# from_pretrained keywords that are config fields but mean how to load, not what to build.
_LOADING_KWARGS = frozenset({"dtype", "torch_dtype", "quantization_config", "attn_implementation"})


@dataclass
class VisionOutputs:
    image_tokens: torch.Tensor  # [B, N, D] item 4, text-guided, projected
    latents: torch.Tensor  # [B, q, D]
    context: torch.Tensor  # [B, q, w*w, D]
    text_embeds: torch.Tensor  # [B, T, D] embed_tokens(instructs)
    instruct_features: torch.Tensor | None  # [B, T, D]; None without text guidance
    text_valid: torch.Tensor  # [B, T] bool
    patch_embeds: torch.Tensor  # [B', N, D_v] tower embedding output of item 4 (rows of the vision loss)
    loss_image_tokens: torch.Tensor | None = None  # [B', N, D] image tokens of those rows (default: image_tokens)
    anchor: torch.Tensor | None = None  # 0-valued term that keeps every vision parameter in the graph


@dataclass
class FusionCausalLMOutput(CausalLMOutputWithPast):
    """``CausalLMOutputWithPast`` plus the loss parts (for logging) and the merged labels."""

    ce_loss: torch.Tensor | None = None
    text_loss: torch.Tensor | None = None
    vision_loss: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None


def _is_prefill(inputs_embeds: torch.Tensor | None, input_ids: torch.Tensor | None) -> bool:
    """Whether this call carries more than one new position (training, or generate's prefill), from
    shapes alone: the interaction layers run there only. generate keeps passing the latent positions to
    every one-token decoding step; building the interaction inputs there would cost a host sync per
    token and split the compiled decode step in two."""
    current = inputs_embeds if inputs_embeds is not None else input_ids
    return current is not None and current.shape[1] > 1


def _run_interaction(block: InteractionBlock, module: nn.Module, args: tuple, kwargs: dict[str, Any], output):
    """Forward hook on a decoder layer: refine latent tokens when this call carries FUSION inputs
    (``forward`` passes them at prefill and in training only, see ``_is_prefill``)."""
    inputs = kwargs.get("fusion_interaction")
    if inputs is None:
        return None
    hidden = output[0] if isinstance(output, tuple) else output
    hidden = block(hidden, inputs)
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


class FusionModelMixin:
    """Adds the vision side to a HF decoder base model (names as in the reference checkpoint)."""

    def _init_fusion(self, config) -> None:
        vision_config = build_vision_config(config)
        d_v, d = vision_config.hidden_size, config.hidden_size
        if config.mm_hidden_size is not None and config.mm_hidden_size != d_v:
            raise ValueError(f"mm_hidden_size={config.mm_hidden_size} but the vision tower width is {d_v}")
        self.vision_tower = FusionVisionTower(vision_config, config.vision_text_mask, config.vision_attention)
        self.mm_projector = build_projector(config.mm_projector_type, 3 * d_v, d)
        self.aux_projector = build_projector(config.mm_projector_type, d, d_v)
        self.vision_sampler_layers = nn.ModuleList(
            InteractionBlock(d, config.vision_sampler_num_heads) for _ in range(config.num_of_vision_sampler_layers)
        )
        start, stride = config.start_of_vision_sampler_layers, config.stride_of_vision_sampler_layers
        for k, block in enumerate(self.vision_sampler_layers):
            idx = start + k * stride
            if 0 <= idx < len(self.layers):
                self.layers[idx].register_forward_hook(partial(_run_interaction, block), with_kwargs=True)

    def select_query_len(self, query_len: int | None) -> int:
        """q for this call: explicit > random choice in training > the config's inference default."""
        allowed = self.config.query_lengths
        if query_len is None:
            if self.training and len(allowed) > 1:
                return allowed[int(torch.randint(len(allowed), ()).item())]
            return self.config.default_query_len
        if round(query_len**0.5) ** 2 != query_len:
            raise ValueError(f"query_len must be a perfect square, got {query_len}")
        return int(query_len)

    def encode_images(
        self, pixel_values: torch.Tensor, instruct_ids: torch.Tensor, q: int, batch_invariant: bool = False
    ) -> VisionOutputs:
        """Text-guided encoding of the whole image, plain encoding of the 4 tiles, pooled latents/context.

        ``batch_invariant``: each sample's text guidance ignores the batch's instruction padding
        (see :meth:`FusionVisionTower._masks`), so a sample encodes as it would alone.
        """
        if pixel_values.ndim != 5 or pixel_values.shape[1] != 5:
            raise ValueError(f"pixel_values must be [B, 5, 3, S, S] (static_hd), got {tuple(pixel_values.shape)}")
        bsz = pixel_values.shape[0]
        if instruct_ids.shape[0] != bsz:
            raise ValueError(f"instruct_ids has batch {instruct_ids.shape[0]}, pixel_values has {bsz}")
        tower = self.vision_tower
        dtype = tower.vision_tower.vision_model.embeddings.patch_embedding.weight.dtype
        pixel_values = pixel_values.to(dtype)
        text_embeds = self.embed_tokens(instruct_ids)
        text_valid = instruct_ids != 0
        lengths = None
        if batch_invariant:  # right-padded with 0; a sample's own length is at least 1 (e.g. "[0]")
            positions = torch.arange(1, instruct_ids.shape[1] + 1, device=instruct_ids.device)
            lengths = (positions * text_valid).amax(dim=1).clamp(min=1)
        n = tower.num_patches
        if self.config.text_guided_vision:
            feats, h0 = tower(pixel_values[:, 4], self.aux_projector(text_embeds), text_valid, lengths)
        else:  # ablation: the image alone, as in a plain LLaVA-style encoder
            feats, h0 = tower(pixel_values[:, 4])
        projected = self.mm_projector(feats)
        tiles = pixel_values[:, :4].flatten(0, 1)
        tile_feats, _ = tower(tiles)
        grid = self.mm_projector(tile_feats)  # [4B, N, D]
        p = round(n**0.5)
        d = grid.shape[-1]
        # 4 tiles row-major, patches row-major inside each tile -> one 2P x 2P grid.
        grid = grid.view(bsz, 2, 2, p, p, d).permute(0, 5, 1, 3, 2, 4).reshape(bsz, d, 2 * p, 2 * p)
        side = round(q**0.5)
        w = self.config.window_size
        latents = F.adaptive_max_pool2d(grid, side).flatten(2).transpose(1, 2)
        ctx = F.adaptive_max_pool2d(grid, side * w)  # [B, D, s*w, s*w]
        ctx = ctx.view(bsz, d, side, w, side, w).permute(0, 2, 4, 3, 5, 1).reshape(bsz, q, w * w, d)
        return VisionOutputs(
            image_tokens=projected[:, :n],
            latents=latents,
            context=ctx,
            text_embeds=text_embeds,
            instruct_features=projected[:, n:] if self.config.text_guided_vision else None,
            text_valid=text_valid,
            patch_embeds=h0[:, :n],
        )

    def encode_images_shared(
        self,
        pixel_values: torch.Tensor,
        instruct_ids: torch.Tensor,
        has_image: torch.Tensor,
        q: int,
        batch_invariant: bool = False,
    ) -> VisionOutputs:
        """Encodes only the samples with an image, plus one zero image whose context serves every
        text-only sample.

        A text-only sample's logits depend on the vision side only through the context of its zero
        image, which is the same for all of them, so logits equal the reference's; only the vision
        mapping loss differs (it covers real images, not zero images). The zero image always runs,
        so every process runs every module even when its batch has no image (no collective hangs).
        """
        idx = has_image.nonzero(as_tuple=True)[0]
        n, bsz = idx.numel(), pixel_values.shape[0]
        sub = self.encode_images(
            torch.cat([pixel_values[idx], pixel_values.new_zeros((1, *pixel_values.shape[1:]))]),
            torch.cat([instruct_ids[idx], instruct_ids.new_zeros((1, instruct_ids.shape[1]))]),
            q,
            batch_invariant,
        )

        def scatter(t: torch.Tensor, fill: torch.Tensor | None) -> torch.Tensor:
            base = fill.expand(bsz, *t.shape[1:]) if fill is not None else t.new_zeros((bsz, *t.shape[1:]))
            return base.index_copy(0, idx, t[:n])

        zero_term = vision_mapping_loss(sub.patch_embeds[n:], self.aux_projector(sub.image_tokens[n:]))
        return VisionOutputs(
            image_tokens=scatter(sub.image_tokens, None),
            latents=scatter(sub.latents, None),
            context=scatter(sub.context, sub.context[n:]),
            text_embeds=sub.text_embeds,
            instruct_features=sub.instruct_features,
            text_valid=sub.text_valid,
            patch_embeds=sub.patch_embeds[:n],
            loss_image_tokens=sub.image_tokens[:n],
            anchor=zero_term * 0.0,
        )

    def prepare_multimodal_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        instruct_ids: torch.Tensor | None = None,
        query_len: int | None = None,
        padding_side: str | None = None,
        batch_invariant: bool | None = None,
        text_only_vision: str | None = None,
    ) -> tuple[MergedInputs, VisionOutputs]:
        """Vision encoding + merged sequence. A sample without an image is encoded as a zero image,
        exactly as the reference batches it.

        ``batch_invariant`` (default: when there are no labels, i.e. at inference) encodes each
        sample's text guidance as the reference does for a batch of one, so batched answers equal
        one-at-a-time answers. Training batches (labels given) keep the reference's batch semantics,
        where instruction padding takes part in the early layers' uniform text attention.

        ``text_only_vision``: ``"reference"`` encodes a zero image for every sample without one
        (reference-exact loss); ``"shared"`` encodes one zero image for all of them (same logits,
        the vision mapping loss covers real images only). Default: the config's ``text_only_vision``."""
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [B, L], got {tuple(input_ids.shape)}")
        bsz = input_ids.shape[0]
        vc = self.vision_tower.config
        if pixel_values is None:
            pixel_values = torch.zeros(bsz, 5, vc.num_channels, vc.image_size, vc.image_size, device=input_ids.device)
        elif pixel_values.shape[0] != bsz:
            raise ValueError(f"pixel_values has batch {pixel_values.shape[0]}, input_ids has {bsz}")
        elif tuple(pixel_values.shape[2:]) != (vc.num_channels, vc.image_size, vc.image_size):
            raise ValueError(
                f"pixel_values must be [B, 5, {vc.num_channels}, {vc.image_size}, {vc.image_size}], "
                f"got {tuple(pixel_values.shape)}"
            )
        if instruct_ids is None:
            instruct_ids = torch.zeros(bsz, 1, dtype=torch.long, device=input_ids.device)
        q = self.select_query_len(query_len)
        if batch_invariant is None:
            batch_invariant = labels is None
        mode = text_only_vision or self.config.text_only_vision
        if mode == "shared":
            has_image = (
                (input_ids == IMAGE_TOKEN_INDEX) & (attention_mask.bool() if attention_mask is not None else True)
            ).any(dim=1)
            vision = self.encode_images_shared(pixel_values, instruct_ids, has_image, q, batch_invariant)
        elif mode == "reference":
            vision = self.encode_images(pixel_values, instruct_ids, q, batch_invariant)
        else:
            raise ValueError(f"text_only_vision must be 'reference' or 'shared', got {mode!r}")
        merged = merge_sequence(
            input_ids,
            attention_mask,
            labels,
            self.embed_tokens,
            vision.image_tokens,
            vision.latents,
            max_length=self.config.tokenizer_model_max_length,
            padding_side=padding_side or self.config.tokenizer_padding_side,
        )
        return merged, vision


class FusionPhi3Model(FusionModelMixin, Phi3Model):
    config_class = FusionPhiConfig

    def __init__(self, config):
        super().__init__(config)
        self._init_fusion(config)


class FusionLlamaModel(FusionModelMixin, LlamaModel):
    config_class = FusionLlamaConfig

    def __init__(self, config):
        super().__init__(config)
        self._init_fusion(config)


class FusionQwen2Model(FusionModelMixin, Qwen2Model):
    config_class = FusionQwen2Config

    def __init__(self, config):
        super().__init__(config)
        self._init_fusion(config)


def _has_placeholders(input_ids: torch.Tensor | None) -> bool:
    """Whether ids hold image / latent placeholders: a data-dependent check (a host sync). A compiled
    call is a decoding step (generate compiles only those, with a static cache), whose ids never hold
    placeholders, so the check is skipped there and the step stays one graph."""
    if input_ids is None or torch.compiler.is_compiling():
        return False
    return bool((input_ids < 0).any())


class FusionForCausalLM:
    """FUSION model. ``FusionForCausalLM.from_pretrained(dir)`` / ``FusionForCausalLM(config)``
    return the class for the checkpoint's LLM family (all of them are ``FusionForCausalLM``)."""

    _base_model_class: type = None

    def __new__(cls, config=None, *args, **kwargs):
        if cls is FusionForCausalLM:
            cls = _family_class(config)
        return super().__new__(cls)

    def __init__(self, config):
        # The family's own CausalLM __init__ would build a plain decoder; build ours instead.
        PreTrainedModel.__init__(self, config)
        self.model = self._base_model_class(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args, config=None, **kwargs):
        path = pretrained_model_name_or_path
        if config is None or isinstance(config, (str, os.PathLike)):
            config = AutoConfig.from_pretrained(config or path, local_files_only=kwargs.get("local_files_only", False))
        if not isinstance(config, FusionConfig):
            raise ValueError(f"{path} is not a FUSION checkpoint (model_type {config.model_type!r})")
        if not config.vision_config:
            config.vision_config = resolve_vision_config(config, path if os.path.isdir(path) else None)
        # As transformers' own from_pretrained: keyword arguments naming config fields override them
        # (e.g. window_size=4); the loading options that are also config fields stay loading options.
        fields = set(config.to_dict()) - _LOADING_KWARGS
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in fields}
        if overrides:
            config = copy.deepcopy(config)
            for key, value in overrides.items():
                setattr(config, key, value)
        target = cls if cls is not FusionForCausalLM else _family_class(config)
        quant = kwargs.get("quantization_config")
        if quant is not None and hasattr(quant, "llm_int8_skip_modules") and not quant.llm_int8_skip_modules:
            quant.llm_int8_skip_modules = list(FUSION_UNQUANTIZED_MODULES)
        return super(FusionForCausalLM, target).from_pretrained(path, *args, config=config, **kwargs)

    @classmethod
    def from_config(cls, config, **kwargs):
        target = cls if cls is not FusionForCausalLM else _family_class(config)
        return target._from_config(config, **kwargs)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        instruct_ids: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        query_len: int | None = None,
        vision_positions: torch.Tensor | None = None,
        query_positions: torch.Tensor | None = None,
        interaction_context: torch.Tensor | None = None,
        padding_side: str | None = None,
        text_only_vision: str | None = None,
        **kwargs,
    ) -> FusionCausalLMOutput:
        """Merged-sequence forward. ``input_ids`` may hold -200 (image) / -300 (latent) placeholders;
        ``labels`` may hold -400 instruction marks. Logits and labels are over the merged sequence,
        padded on ``padding_side`` (default: the config's ``tokenizer_padding_side``)."""
        vision = None
        if inputs_embeds is None and (_has_placeholders(input_ids) or pixel_values is not None):
            if cache is not None and cache.get_seq_length() > 0:
                raise ValueError("image placeholders can only be merged at prefill (empty cache)")
            merged, vision = self.model.prepare_multimodal_inputs(
                input_ids,
                attention_mask,
                labels,
                pixel_values,
                instruct_ids,
                query_len,
                padding_side,
                text_only_vision=text_only_vision,
            )
            input_ids, inputs_embeds = None, merged.inputs_embeds
            attention_mask, position_ids, labels = merged.attention_mask, merged.position_ids, merged.labels
            vision_positions, query_positions = merged.vision_positions, merged.query_positions
            interaction_context = vision.context
        interaction = None
        if interaction_context is not None and vision_positions is not None and _is_prefill(inputs_embeds, input_ids):
            interaction = InteractionInputs(vision_positions, query_positions, interaction_context)
        outputs = super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            fusion_interaction=interaction,
            **kwargs,
        )
        loss = ce = lt = lv = None
        if labels is not None:
            ce = causal_lm_loss(outputs.logits, labels)
            if vision is not None:
                if vision.instruct_features is not None:
                    lt = text_mapping_loss(vision.text_embeds, vision.instruct_features, vision.text_valid)
                image_tokens = vision.loss_image_tokens if vision.loss_image_tokens is not None else vision.image_tokens
                lv = (
                    vision_mapping_loss(vision.patch_embeds, self.model.aux_projector(image_tokens))
                    if vision.patch_embeds.shape[0]
                    else None
                )
                if vision.anchor is not None:
                    lv = vision.anchor if lv is None else lv + vision.anchor
            mapping = [t for t in (lt, lv) if t is not None]
            parts = ([ce] if ce is not None else []) + (
                [self.config.mapping_loss_weight * sum(mapping)] if mapping else []
            )
            loss = sum(parts) if parts else None
        return FusionCausalLMOutput(
            loss=loss,
            logits=outputs.logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            ce_loss=ce,
            text_loss=lt,
            vision_loss=lv,
            labels=labels,
            attention_mask=attention_mask,
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        instruct_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        query_len: int | None = None,
        **kwargs,
    ):
        """HF ``generate`` over the merged prompt (interaction layers run once, at prefill).

        Prompts are merged left-padded. The returned sequences are the prompt ids (with their
        placeholders) followed by the new tokens, as for other HF models.
        """
        if not (_has_placeholders(input_ids) or pixel_values is not None):
            return super().generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        merged, vision = self.model.prepare_multimodal_inputs(
            input_ids,
            attention_mask,
            None,
            pixel_values,
            instruct_ids,
            query_len,
            padding_side="left",
            text_only_vision="shared",  # same logits as "reference", one zero image for all text-only prompts
        )
        out = super().generate(
            inputs_embeds=merged.inputs_embeds,
            attention_mask=merged.attention_mask,
            vision_positions=merged.vision_positions,
            query_positions=merged.query_positions,
            interaction_context=vision.context,
            **kwargs,
        )
        sequences = out if isinstance(out, torch.Tensor) else out.sequences
        expand = sequences.shape[0] // input_ids.shape[0]
        full = torch.cat([input_ids.repeat_interleave(expand, dim=0), sequences], dim=1)
        if isinstance(out, torch.Tensor):
            return full
        out.sequences = full
        return out


class FusionPhi3ForCausalLM(FusionForCausalLM, Phi3ForCausalLM):
    config_class = FusionPhiConfig
    _base_model_class = FusionPhi3Model
    _no_split_modules = ["Phi3DecoderLayer", "SiglipEncoderLayer", "InteractionBlock"]


class FusionLlamaForCausalLM(FusionForCausalLM, LlamaForCausalLM):
    config_class = FusionLlamaConfig
    _base_model_class = FusionLlamaModel
    _no_split_modules = ["LlamaDecoderLayer", "SiglipEncoderLayer", "InteractionBlock"]


class FusionQwen2ForCausalLM(FusionForCausalLM, Qwen2ForCausalLM):
    config_class = FusionQwen2Config
    _base_model_class = FusionQwen2Model
    _no_split_modules = ["Qwen2DecoderLayer", "SiglipEncoderLayer", "InteractionBlock"]


MODEL_CLASSES: dict[str, type] = {
    "fusion_phi": FusionPhi3ForCausalLM,
    "fusion_llama": FusionLlamaForCausalLM,
    "fusion_qwen2": FusionQwen2ForCausalLM,
}


def _family_class(config) -> type:
    model_type = getattr(config, "model_type", None)
    if model_type not in MODEL_CLASSES:
        raise ValueError(f"unknown FUSION model type {model_type!r} (known: {', '.join(MODEL_CLASSES)})")
    return MODEL_CLASSES[model_type]
