"""FUSION as an lmms-eval model: ``lmms-eval --model fusion --model_args pretrained=DIR[,dtype=...,
query_len=...,max_new_tokens=...] --batch_size 8 --tasks ...``.

Registration, with nothing to copy into lmms-eval:

- lmms-eval >= 0.6 reads the entry-point group ``lmms_eval.models``; this package declares
  ``fusion = "fusion.eval.lmms_plugin:manifest"``, a callable returning the model's ``ModelManifest``.
- older versions read ``LMMS_EVAL_PLUGINS=fusion.eval.lmms`` (``fusion.eval.lmms.models`` lists the
  model; its class is also registered with ``register_model("fusion")``).

The class is created on first access (module ``__getattr__``), so importing this module never imports
lmms-eval - lmms-eval loads entry points while it is itself being imported.

Requests are batched (``--batch_size``) per task and generation settings, longest prompts first, and
every sample is guided by its own question (the vision encoder's instruction), unlike a batch that
reuses its first question for all. Stop strings (``until``) cut the output; greedy unless the task
asks for a temperature. ``loglikelihood`` scores a continuation from the logits of one forward pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

MODEL_NAME = "fusion"
CLASS_PATH = "fusion.eval.lmms_plugin.FusionLmms"
_IMAGE_MARKERS = ("<image>",)


def manifest() -> Any:
    """Entry point of the ``lmms_eval.models`` group."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_NAME, simple_class_path=CLASS_PATH)


def cut_at_stop(text: str, until: Sequence[str]) -> str:
    """The text up to the first stop string (lmms-eval's ``until``)."""
    cut = len(text)
    for stop in until:
        if stop:
            pos = text.find(stop)
            if pos != -1:
                cut = min(cut, pos)
    return text[:cut]


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class FusionLmmsImpl:
    """The model logic; ``FusionLmms`` adds lmms-eval's ``lmms`` base class to it."""

    is_simple = True

    def __init__(
        self,
        pretrained: str,
        device: str | None = None,
        batch_size: int | str = 1,
        dtype: str = "auto",
        query_len: int | None = None,
        max_new_tokens: int = 1024,
        multi_image: str = "error",
        max_batch_size: int | None = None,  # lmms-eval always passes it; only for automatic batch sizes
        **unknown: Any,
    ) -> None:
        super().__init__()
        if unknown:
            raise ValueError(f"unknown model_args for fusion: {', '.join(sorted(unknown))}")
        if not str(batch_size).isdigit() or int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive number (no automatic sizing), got {batch_size!r}")
        if multi_image not in ("error", "first"):
            raise ValueError(f"multi_image must be 'error' or 'first', got {multi_image!r}")
        from accelerate import Accelerator

        from .runner import load_model, resolve_device_dtype

        accelerator = Accelerator()
        if accelerator.num_processes > 1:  # torchrun / accelerate launch: one shard of the requests per process
            device = str(accelerator.device)
            self._rank, self._world_size = accelerator.process_index, accelerator.num_processes
        self.accelerator = accelerator
        device, torch_dtype = resolve_device_dtype(device, dtype)
        self._device = device
        self._model, self.processor = load_model(pretrained, device, torch_dtype)
        self.batch_size_per_gpu = int(batch_size)
        self.query_len = None if query_len is None else int(query_len)
        self.max_new_tokens = int(max_new_tokens)
        self.multi_image = multi_image

    # lmms-eval reads these
    @property
    def model(self) -> Any:
        return self._model

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def device(self) -> str:
        return self._device

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return int(getattr(self.tokenizer, "model_max_length", 4096))

    # ----- inputs ------------------------------------------------------------------------------
    def _visual(self, task: str, split: str, doc_id: Any, doc_to_visual: Any) -> Any:
        if doc_to_visual is None:
            return None
        visuals = doc_to_visual(self.task_dict[task][split][doc_id])
        visuals = [v for v in (visuals or []) if v is not None]
        if not visuals:
            return None
        if len(visuals) > 1 and self.multi_image == "error":
            raise ValueError(
                f"task {task!r} doc {doc_id!r} has {len(visuals)} images but FUSION takes one per prompt; "
                "pass multi_image=first in --model_args to use the first"
            )
        if isinstance(visuals[0], str):
            raise ValueError(f"task {task!r} doc {doc_id!r}: video / path inputs are not supported")
        return visuals[0]

    def _inputs(self, contexts: list[str], images: list[Any]) -> tuple[dict[str, Any], list[str]]:
        """Chat prompts, one instruction per sample (its own question), pixel values."""
        prompts, questions = [], []
        for context, image in zip(contexts, images, strict=True):
            question = context
            for marker in _IMAGE_MARKERS:
                question = question.replace(marker, "")
            question = question.strip()
            content: list[dict[str, Any]] = [{"type": "text", "text": question}]
            if image is not None:
                content.insert(0, {"type": "image"})
            prompts.append(
                self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
            )
            questions.append(question)
        has_images = any(i is not None for i in images)
        batch = self.processor(text=prompts, images=images if has_images else None, questions=questions)
        return {k: v.to(self._device) for k, v in batch.items()}, prompts

    # ----- lmms API ----------------------------------------------------------------------------
    def generate_until(self, requests: list[Any]) -> list[str]:
        import torch
        from tqdm.auto import tqdm

        results: list[str | None] = [None] * len(requests)
        order = sorted(range(len(requests)), key=lambda i: (-len(requests[i].args[0]), i))
        groups: dict[str, list[int]] = {}
        for i in order:
            _, gen_kwargs, _, _, task, split = requests[i].args
            key = json.dumps([task, split, gen_kwargs], sort_keys=True, default=str)
            groups.setdefault(key, []).append(i)
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="FUSION responding")
        for indices in groups.values():
            gen_kwargs = dict(requests[indices[0]].args[1] or {})
            until = gen_kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            kwargs = self._generation_kwargs(gen_kwargs)
            for chunk in _chunks(indices, self.batch_size):
                contexts, images = [], []
                for i in chunk:
                    context, _, doc_to_visual, doc_id, task, split = requests[i].args
                    contexts.append(context)
                    images.append(self._visual(task, split, doc_id, doc_to_visual))
                inputs, _ = self._inputs(contexts, images)
                with torch.inference_mode():
                    seqs = self._model.generate(**inputs, query_len=self.query_len, **kwargs)
                texts = self.processor.batch_decode(seqs[:, inputs["input_ids"].shape[1] :])
                for i, context, text in zip(chunk, contexts, texts, strict=True):
                    text = cut_at_stop(text, until).strip()
                    results[i] = text
                    self.cache_hook.add_partial("generate_until", (context, requests[i].args[1]), text)
                bar.update(len(chunk))
        bar.close()
        return [r if r is not None else "" for r in results]

    def _generation_kwargs(self, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
        temperature = float(gen_kwargs.get("temperature") or 0.0)
        sample = bool(gen_kwargs.get("do_sample", False)) or temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": int(gen_kwargs.get("max_new_tokens") or self.max_new_tokens),
            "num_beams": int(gen_kwargs.get("num_beams") or 1),
            "do_sample": sample,
        }
        if sample:
            kwargs["temperature"] = temperature if temperature > 0 else 1.0
            if gen_kwargs.get("top_p") is not None:
                kwargs["top_p"] = float(gen_kwargs["top_p"])
        return kwargs

    def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
        """Sum of the continuation tokens' log-probabilities after the chat prompt, and whether greedy
        decoding would produce them - as generation scores them: the prompt is prefilled alone (FUSION's
        interaction layers run there, on the prompt only) and the continuation follows on the KV cache.
        One teacher-forced pass over prompt + continuation would let the interaction see the continuation."""
        import torch

        out = []
        for request in requests:
            context, target, doc_to_visual, doc_id, task, split = request.args
            continuation = target if isinstance(target, str) else target(self.task_dict[task][split][doc_id])
            image = self._visual(task, split, doc_id, doc_to_visual)
            inputs, _ = self._inputs([context], [image])
            cont = self.tokenizer(continuation, add_special_tokens=False).input_ids
            if not cont:
                raise ValueError(f"empty continuation for task {task!r} doc {doc_id!r}")
            cont_ids = torch.tensor([cont], device=self._device)
            with torch.inference_mode():
                prefill = self._model(**inputs, query_len=self.query_len, use_cache=True)
                logits = prefill.logits[0, -1:]
                if len(cont) > 1:
                    ones = torch.ones(cont_ids.shape, dtype=prefill.attention_mask.dtype, device=cont_ids.device)
                    mask = torch.cat([prefill.attention_mask, ones], dim=1)
                    step = self._model(input_ids=cont_ids, attention_mask=mask, cache=prefill.cache, use_cache=True)
                    logits = torch.cat([logits, step.logits[0, :-1]])
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            picked = logprobs.gather(-1, cont_ids[0][:, None]).squeeze(-1)
            greedy = bool((logprobs.argmax(-1) == cont_ids[0]).all())
            out.append((float(picked.sum()), greedy))
            self.cache_hook.add_partial("loglikelihood", (context, continuation), out[-1])
        return out

    def generate_until_multi_round(self, requests: list[Any]) -> list[str]:
        raise NotImplementedError("multi-round generation is not supported by the FUSION plugin")


_CLASS: type | None = None


def _build_class() -> type:
    from lmms_eval.api.model import lmms

    cls = type("FusionLmms", (FusionLmmsImpl, lmms), {"__module__": __name__, "__doc__": FusionLmmsImpl.__doc__})
    cls.__qualname__ = "FusionLmms"
    try:  # lmms-eval < 0.6 finds models through this registry (newer ones through the entry point)
        from lmms_eval.api.registry import register_model
    except ImportError:
        return cls
    return register_model(MODEL_NAME)(cls)


def __getattr__(name: str) -> Any:
    global _CLASS
    if name == "FusionLmms":
        if _CLASS is None:
            _CLASS = _build_class()
        return _CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
