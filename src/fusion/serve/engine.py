"""Batching generation engine: one worker thread owns the model and decodes many requests together.

Requests that arrive within a short window are prefilled as one left-padded batch and then decoded
step by step; each sequence has its own sampling settings and its own seeded generator, so its
tokens do not depend on what it was batched with. Finished, stopped or cancelled sequences drop
out of the batch's bookkeeping; nothing is stored on the model.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..modeling_fusion import FusionForCausalLM
from ..processing_fusion import FusionProcessor

logger = logging.getLogger("fusion.serve")


class QueueFullError(RuntimeError):
    """The request queue is full; the client should retry later."""


@dataclass
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class Sequence:
    """One generated choice. ``emit(kind, payload)`` is called from the worker thread."""

    prompt: str
    image: Any
    question: str
    params: SamplingParams
    emit: Callable[[str, Any], None]
    index: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    emitted: int = 0
    finish_reason: str | None = None
    prompt_tokens: int = 0


class Engine:
    def __init__(
        self,
        model: FusionForCausalLM,
        processor: FusionProcessor,
        max_batch: int = 32,
        batch_window_s: float = 0.01,
        max_queue: int = 64,
    ):
        self.model = model
        self.processor = processor
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self.queue: queue.Queue[list[Sequence]] = queue.Queue(maxsize=max_queue)
        self.eos_ids = self._eos_ids()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fusion-engine", daemon=True)
        self.busy = threading.Event()
        self.generated_tokens = 0

    def _eos_ids(self) -> set[int]:
        ids = set()
        for source in (self.model.generation_config.eos_token_id, self.processor.tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(source)
        return ids

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finishes what is queued and in flight, then stops the worker."""
        self._stop.set()
        self._thread.join(timeout)

    def submit(self, sequences: list[Sequence]) -> None:
        """Queues the choices of one request together; raises QueueFullError when the queue is full."""
        if self._stop.is_set():
            raise QueueFullError("the server is shutting down")
        try:
            self.queue.put_nowait(sequences)
        except queue.Full as err:
            raise QueueFullError("too many requests are waiting") from err

    # ----- worker ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while not (self._stop.is_set() and self.queue.empty()):
            try:
                first = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = list(first)
            deadline = time.monotonic() + self.batch_window_s
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    more = self.queue.get(timeout=remaining)
                except queue.Empty:
                    break
                batch.extend(more)
            batch = [s for s in batch if not s.cancelled.is_set()]
            if not batch:
                continue
            self.busy.set()
            try:
                for start in range(0, len(batch), self.max_batch):
                    self._generate(batch[start : start + self.max_batch])
            except Exception as err:  # reported to every waiting client, the worker keeps serving
                logger.exception("generation failed")
                for seq in batch:
                    if seq.finish_reason is None:
                        seq.emit("error", str(err))
            finally:
                self.busy.clear()

    @torch.inference_mode()
    def _generate(self, batch: list[Sequence]) -> None:
        proc, model = self.processor, self.model
        device = next(model.parameters()).device
        images = [s.image for s in batch]
        inputs = proc(
            text=[s.prompt for s in batch],
            images=images if any(i is not None for i in images) else None,
            questions=[s.question for s in batch],
        )
        inputs = {k: v.to(device) for k, v in inputs.items()}
        for s, mask in zip(batch, inputs["attention_mask"], strict=True):
            s.prompt_tokens = int(mask.sum())
        merged, vision = model.model.prepare_multimodal_inputs(
            inputs["input_ids"],
            inputs["attention_mask"],
            None,
            inputs.get("pixel_values"),
            inputs["instruct_ids"],
            padding_side="left",
            text_only_vision="shared",
        )
        out = model(
            inputs_embeds=merged.inputs_embeds,
            attention_mask=merged.attention_mask,
            position_ids=merged.position_ids,
            vision_positions=merged.vision_positions,
            query_positions=merged.query_positions,
            interaction_context=vision.context,
            use_cache=True,
            logits_to_keep=1,
        )
        mask, positions = merged.attention_mask, merged.position_ids[:, -1]
        generators = []
        for s in batch:
            g = torch.Generator(device=device)
            g.manual_seed(s.params.seed if s.params.seed is not None else int(torch.randint(2**62, ()).item()))
            generators.append(g)
        cache = out.cache
        logits = out.logits[:, -1].float()
        live = [True] * len(batch)
        step = 0
        while any(live):
            next_tokens = torch.zeros(len(batch), dtype=torch.long, device=device)
            for i, s in enumerate(batch):
                if not live[i]:
                    continue
                if s.cancelled.is_set():
                    live[i] = False
                    s.finish_reason = "cancelled"
                    continue
                token = _sample(logits[i], s.params, generators[i])
                next_tokens[i] = token
                live[i] = self._accept(s, token)
            step += 1
            if not any(live):
                break
            mask = torch.cat([mask, mask.new_ones(len(batch), 1)], dim=1)
            positions = positions + 1
            out = model(
                input_ids=next_tokens[:, None],
                attention_mask=mask,
                position_ids=positions[:, None],
                cache=cache,
                use_cache=True,
            )
            cache, logits = out.cache, out.logits[:, -1].float()

    def _accept(self, s: Sequence, token: int) -> bool:
        """Adds a token to a sequence and streams the text that is safe to show; returns whether it goes on.

        With stop strings, the last (longest stop - 1) characters are held back until it is clear
        they do not start a stop string, so a stop string is never streamed.
        """
        self.generated_tokens += 1
        if token in self.eos_ids:
            return self._finish(s, "stop")
        s.tokens.append(token)
        text = self.processor.tokenizer.decode(s.tokens, skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # else an incomplete UTF-8 character: wait for the next token
            s.text = text
        for stop in s.params.stop:
            cut = s.text.find(stop) if stop else -1
            if cut >= 0:
                s.text = s.text[:cut]
                return self._finish(s, "stop")
        if len(s.tokens) >= s.params.max_tokens:
            return self._finish(s, "length")
        holdback = max((len(x) for x in s.params.stop), default=1) - 1
        safe = len(s.text) - holdback
        if safe > s.emitted:
            s.emit("delta", s.text[s.emitted : safe])
            s.emitted = safe
        return True

    def _finish(self, s: Sequence, reason: str) -> bool:
        if len(s.text) > s.emitted:
            s.emit("delta", s.text[s.emitted :])
            s.emitted = len(s.text)
        s.finish_reason = reason
        s.emit("done", reason)
        return False


def _sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    if params.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        keep = sorted_probs.cumsum(0) - sorted_probs < params.top_p
        keep[0] = True
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
        probs = probs / probs.sum()
    return int(torch.multinomial(probs, 1, generator=generator))
