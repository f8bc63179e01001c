"""The lmms-eval plugin against stand-ins of lmms-eval's interfaces (installing lmms-eval would pull
in another torch). The stand-ins follow lmms-eval 0.7's ``lmms`` base class, ``Instance``,
``create_from_arg_string`` (``key=value`` pairs, numbers and booleans converted, the CLI's
``batch_size`` / ``device`` added), ``ModelManifest`` and the registration paths: the
``lmms_eval.models`` entry-point group and, for older versions, ``LMMS_EVAL_PLUGINS``."""

from __future__ import annotations

import importlib
import sys
import textwrap
import tomllib
from importlib.metadata import entry_points

import pytest
import torch
from PIL import Image, ImageDraw

from fusion.tiny import EMBEDDED_CHECKPOINT

from .conftest import REPO

STANDIN = {
    "lmms_eval/__init__.py": "",
    "lmms_eval/api/__init__.py": "",
    "lmms_eval/models/__init__.py": "",
    "lmms_eval/api/instance.py": """
        from dataclasses import dataclass, field

        @dataclass
        class Instance:
            request_type: str
            arguments: tuple
            idx: int
            metadata: dict = field(default_factory=dict)
            resps: list = field(default_factory=list)

            def __post_init__(self):
                self.task_name, self.doc_id, self.repeats = (
                    self.metadata["task"], self.metadata["doc_id"], self.metadata["repeats"])

            @property
            def args(self):
                return self.arguments if isinstance(self.arguments, tuple) else (self.arguments,)
    """,
    "lmms_eval/api/model.py": """
        import abc

        class CacheHook:
            def __init__(self):
                self.calls = []

            def add_partial(self, attr, req, res):
                self.calls.append((attr, req, res))

        def _value(v):
            if v.lower() in ("true", "false"):
                return v.lower() == "true"
            if v.isnumeric():
                return int(v)
            try:
                return float(v)
            except ValueError:
                return v

        class lmms(abc.ABC):
            is_simple = True

            def __init__(self):
                self._rank, self._world_size = 0, 1
                self.cache_hook = CacheHook()
                self.task_dict = {}

            @abc.abstractmethod
            def loglikelihood(self, requests): ...

            @abc.abstractmethod
            def generate_until(self, requests): ...

            @abc.abstractmethod
            def generate_until_multi_round(self, requests): ...

            @classmethod
            def create_from_arg_string(cls, arg_string, additional_config=None):
                args = {k: _value(v) for k, v in (a.split("=", 1) for a in arg_string.split(",") if a)}
                extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
                return cls(**args, **extra)

            @property
            def rank(self):
                return self._rank

            @property
            def world_size(self):
                return self._world_size
    """,
    "lmms_eval/api/registry.py": """
        from lmms_eval.api.model import lmms

        MODEL_REGISTRY = {}

        def register_model(*names):
            def decorate(cls):
                for name in names:
                    assert issubclass(cls, lmms)
                    MODEL_REGISTRY[name] = cls
                return cls
            return decorate
    """,
    "lmms_eval/models/registry_v2.py": """
        from dataclasses import dataclass

        @dataclass(frozen=True)
        class ModelManifest:
            model_id: str
            simple_class_path: str | None = None
            chat_class_path: str | None = None
            aliases: tuple = ()
    """,
}


@pytest.fixture(scope="module")
def lmms_eval(tmp_path_factory):
    root = tmp_path_factory.mktemp("standin")
    for name, text in STANDIN.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        yield importlib.import_module("lmms_eval")
        from fusion.eval import lmms_plugin

        lmms_plugin._CLASS = None
        for mod in [m for m in sys.modules if m.startswith(("lmms_eval", "fusion.eval.lmms."))]:
            del sys.modules[mod]


@pytest.fixture(scope="module")
def plugin_class(lmms_eval):
    """The class as lmms-eval >= 0.6 finds it: entry point -> manifest -> class path."""
    (ep,) = [e for e in entry_points(group="lmms_eval.models") if e.name == "fusion"]
    payload = ep.load()
    manifest = payload() if callable(payload) else payload
    from lmms_eval.models.registry_v2 import ModelManifest

    assert isinstance(manifest, ModelManifest) and manifest.model_id == "fusion"
    module, name = manifest.simple_class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


@pytest.fixture(scope="module")
def lm(plugin_class):
    model = plugin_class.create_from_arg_string(
        f"pretrained={EMBEDDED_CHECKPOINT},max_new_tokens=5",
        {"batch_size": "2", "max_batch_size": None, "device": None},
    )
    docs = []
    for i in range(4):
        img = Image.new("RGB", (40, 32), "white")
        ImageDraw.Draw(img).rectangle((2, 2, 10 + 6 * i, 20), fill=(40 * i, 200, 30))
        docs.append({"image": img, "question": f"What colour is the box number {i}?" + " Be brief." * i})
    docs.append({"image": None, "question": "Say hello."})
    model.task_dict = {"toy": {"test": docs}}
    return model


def _request(kind, doc_id, gen_or_target, context=None, visual=lambda doc: [doc["image"]] if doc["image"] else []):
    from lmms_eval.api.instance import Instance

    ctx = context if context is not None else f"<image>\n{doc_id}"
    return Instance(
        request_type=kind,
        arguments=(ctx, gen_or_target, visual, doc_id, "toy", "test"),
        idx=0,
        metadata={"task": "toy", "doc_id": doc_id, "repeats": 1},
    )


def _generate_requests(lm, gen_kwargs=None):
    docs = lm.task_dict["toy"]["test"]
    return [_request("generate_until", i, dict(gen_kwargs or {}), context=d["question"]) for i, d in enumerate(docs)]


def test_registration(lmms_eval, plugin_class):
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["lmms_eval.models"] == {"fusion": "fusion.eval.lmms_plugin:manifest"}
    from lmms_eval.api.model import lmms

    assert issubclass(plugin_class, lmms) and plugin_class.is_simple and plugin_class.__name__ == "FusionLmms"
    # lmms-eval < 0.6: LMMS_EVAL_PLUGINS=fusion.eval.lmms -> <plugin>.models.AVAILABLE_MODELS -> <plugin>.models.<name>
    models = importlib.import_module("fusion.eval.lmms.models")
    for name, class_name in models.AVAILABLE_MODELS.items():
        assert getattr(importlib.import_module(f"fusion.eval.lmms.models.{name}"), class_name) is plugin_class
    from lmms_eval.api.registry import MODEL_REGISTRY

    assert MODEL_REGISTRY["fusion"] is plugin_class


def test_batched_generation_with_per_sample_instructions(lm):
    calls = []
    generate = lm.model.generate

    def spy(**kwargs):
        calls.append(kwargs["instruct_ids"].clone())
        return generate(**kwargs)

    lm.model.generate = spy
    try:
        batched = lm.generate_until(_generate_requests(lm))
        assert len(calls) == 3  # 5 requests in batches of 2, longest prompts first
        single = [lm.generate_until([r])[0] for r in _generate_requests(lm)]
    finally:
        del lm.model.generate
    assert batched == single and len(set(batched)) > 1
    docs = lm.task_dict["toy"]["test"]
    order = sorted(range(5), key=lambda i: (-len(docs[i]["question"]), i))
    first_batch = [order[0], order[1]]
    expected = [lm.processor.tokenize_instruction(docs[i]["question"]) for i in first_batch]
    for row, ids in zip(calls[0], expected, strict=True):  # each sample is guided by its own question
        assert row[: len(ids)].tolist() == ids and not row[len(ids) :].any()
    assert not torch.equal(calls[0][0], calls[0][1])
    hooks = [c for c in lm.cache_hook.calls if c[0] == "generate_until"]
    assert len(hooks) >= 5 and hooks[0][2] in batched


def test_stop_strings(lm):
    from fusion.eval.lmms_plugin import cut_at_stop

    assert cut_at_stop("Paris.\n\nQuestion: next", ["\n\n", "Question:"]) == "Paris."
    assert cut_at_stop("no stop here", ["###", ""]) == "no stop here"
    free = lm.generate_until(_generate_requests(lm))
    k = next(i for i, t in enumerate(free) if len(t) >= 3)
    stop = free[k][1:3]
    cut = lm.generate_until(_generate_requests(lm, {"until": [stop]}))
    assert cut[k] == free[k][: free[k].find(stop)].strip()


def test_loglikelihood_matches_generation(lm):
    from transformers import LogitsProcessor, LogitsProcessorList

    doc = lm.task_dict["toy"]["test"][1]
    continuation = " a green box"
    ((logprob, greedy),) = lm.loglikelihood([_request("loglikelihood", 1, continuation, context=doc["question"])])
    tokens = lm.tokenizer(continuation, add_special_tokens=False).input_ids

    class Force(LogitsProcessor):  # generation made to emit the continuation; its raw logits score it
        def __call__(self, input_ids, scores):
            forced = torch.full_like(scores, -float("inf"))
            forced[:, tokens[input_ids.shape[1]]] = 0
            return forced

    inputs, _ = lm._inputs([doc["question"]], [doc["image"]])
    with torch.inference_mode():
        gen = lm.model.generate(
            **inputs,
            max_new_tokens=len(tokens),
            do_sample=False,
            logits_processor=LogitsProcessorList([Force()]),
            output_logits=True,
            return_dict_in_generate=True,
        )
    steps = [torch.log_softmax(step[0].float(), dim=-1) for step in gen.logits]
    expected = sum(float(s[t]) for s, t in zip(steps, tokens, strict=True))
    assert len(tokens) > 1 and logprob < 0
    assert logprob == pytest.approx(expected, abs=1e-4)
    assert greedy == all(int(s.argmax()) == t for s, t in zip(steps, tokens, strict=True))
    text_only = lm.loglikelihood([_request("loglikelihood", 4, " hello", context="Say hello.")])
    assert text_only[0][0] < 0


def test_bad_arguments_and_inputs(lm, plugin_class):
    with pytest.raises(ValueError, match="unknown model_args for fusion: colour"):
        plugin_class.create_from_arg_string(f"pretrained={EMBEDDED_CHECKPOINT},colour=red")
    two = _request("generate_until", 0, {}, context="Compare.", visual=lambda doc: [doc["image"], doc["image"]])
    with pytest.raises(ValueError, match="has 2 images but FUSION takes one"):
        lm.generate_until([two])
    lm.multi_image = "first"
    try:
        assert isinstance(lm.generate_until([two])[0], str)
    finally:
        lm.multi_image = "error"
    with pytest.raises(NotImplementedError):
        lm.generate_until_multi_round([two])
