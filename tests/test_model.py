"""Behaviour of the model on tiny configs: batching, padding, concurrency, saving, errors."""

from __future__ import annotations

import json
import logging
import threading

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from torch._dynamo.utils import counters
from transformers import AutoConfig, AutoModelForCausalLM, CompileConfig

import fusion
from fusion.configuration_fusion import VisionTowerNotFoundError, build_vision_config
from fusion.tiny import build_tiny, tiny_config

from .conftest import fixtures_root


def _image(seed: int, size=(96, 72)) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    arr = (torch.rand(size[1], size[0], 3, generator=g) * 255).to(torch.uint8).numpy()
    return Image.fromarray(arr)


def _messages(question: str, with_image: bool = True):
    content = [{"type": "text", "text": question}]
    if with_image:
        content.insert(0, {"type": "image"})
    return [{"role": "user", "content": content}]


def _prompts(processor):
    specs = [
        ("What is shown in this image?", _image(1)),
        ("Color?", None),
        ("How many objects are there in the picture, and which is left?", _image(2)),
    ]
    texts = [
        processor.apply_chat_template(_messages(q, img is not None), add_generation_prompt=True) for q, img in specs
    ]
    return texts, [q for q, _ in specs], [img for _, img in specs]


def _generate(model, inputs, n=6, **kw):
    out = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False, **kw)
    return out[:, inputs["input_ids"].shape[1] :]


def test_batched_generation_equals_one_at_a_time(tiny_llama):
    model, processor = tiny_llama
    texts, questions, images = _prompts(processor)
    batch = processor(text=texts, images=images, questions=questions)
    assert batch["attention_mask"][:, 0].tolist() != [1, 1, 1]  # left padded: some rows start with padding
    batched = _generate(model, batch)
    for i in range(len(texts)):
        single = processor(text=texts[i], images=[images[i]] if images[i] is not None else None, questions=questions[i])
        assert _generate(model, single)[0].tolist() == batched[i].tolist(), i


def test_static_cache_decoding_equals_dynamic(tiny_llama):
    """The static KV cache (the one torch.compile / CUDA graphs need) gives the dynamic cache's tokens
    and logits, with interaction layers at prefill and a left-padded mixed batch."""
    model, processor = tiny_llama
    texts, questions, images = _prompts(processor)
    batch = processor(text=texts, images=images, questions=questions)
    kw = dict(max_new_tokens=10, min_new_tokens=10, do_sample=False, return_dict_in_generate=True, output_logits=True)
    dynamic = model.generate(**batch, **kw)
    static = model.generate(**batch, cache_implementation="static", **kw)
    assert static.sequences.tolist() == dynamic.sequences.tolist()
    for a, b in zip(static.logits, dynamic.logits, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_compiled_decoding_is_one_graph_and_equals_eager(tiny_llama):
    """generate's compiled decode step (static cache; what runs as CUDA graphs on a GPU) traces as one
    graph (no data-dependent branch, no host sync) and gives the eager tokens and logits. It compiles
    as transformers does by default (fullgraph off), where a break would silently split the step.
    aot_eager runs dynamo and AOT autograd without a C++ compiler, so this runs on any CPU."""
    model, processor = tiny_llama
    texts, questions, images = _prompts(processor)
    batch = processor(text=texts, images=images, questions=questions)
    kw = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, return_dict_in_generate=True, output_logits=True)
    eager = model.generate(**batch, **kw)
    compile_config = CompileConfig(backend="aot_eager", fullgraph=False, dynamic=False)
    compile_config._compile_all_devices = True  # transformers compiles on GPUs only unless told
    torch._dynamo.reset()
    counters.clear()
    try:
        compiled = model.generate(**batch, cache_implementation="static", compile_config=compile_config, **kw)
        assert hasattr(model, "_compiled_call")  # the decode steps really went through torch.compile
        assert dict(counters["graph_break"]) == {}
        assert counters["stats"]["unique_graphs"] == 1
    finally:
        for attr in ("_compiled_call", "_last_compile_config"):  # the fixture's model is shared
            model.__dict__.pop(attr, None)
        torch._dynamo.reset()
    assert compiled.sequences.tolist() == eager.sequences.tolist()
    for a, b in zip(compiled.logits, eager.logits, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_left_and_right_padding_give_same_per_sample_logits(tiny_llama):
    model, processor = tiny_llama
    texts, questions, images = _prompts(processor)
    singles = []
    for i in range(len(texts)):
        one = processor(text=texts[i], images=[images[i]] if images[i] is not None else None, questions=questions[i])
        with torch.no_grad():
            singles.append(model(**one).logits[0])
    for token_side in ("left", "right"):
        batch = processor(text=texts, images=images, questions=questions, padding_side=token_side)
        for merged_side in ("left", "right"):
            with torch.no_grad():
                out = model(**batch, padding_side=merged_side)
            for i, ref in enumerate(singles):  # inference: each sample as if alone
                rows = out.logits[i][out.attention_mask[i].bool()]
                torch.testing.assert_close(rows, ref, atol=1e-4, rtol=0)


def test_training_batch_padding_side_does_not_change_per_sample_logits(tiny_llama):
    model, processor = tiny_llama
    convs = [
        ([{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A square."}], _image(1)),
        ([{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello there, friend."}], None),
        (
            [
                {"from": "human", "value": "Count?\n<image>"},
                {"from": "gpt", "value": "Two."},
                {"from": "human", "value": "Left?"},
                {"from": "gpt", "value": "The red one."},
            ],
            _image(2),
        ),
    ]
    samples = []
    for conv, img in convs:
        enc = processor.encode_conversation(conv, has_image=img is not None)
        if img is not None:
            enc["pixel_values"] = processor.image_processor([img])["pixel_values"][0]
        samples.append(enc)
    results = {}
    for token_side in ("left", "right"):
        batch = processor.collate(samples, padding_side=token_side)
        for merged_side in ("left", "right"):
            with torch.no_grad():
                out = model(**batch, padding_side=merged_side)
            rows = [out.logits[i][out.attention_mask[i].bool()] for i in range(len(samples))]
            results[token_side, merged_side] = (rows, out.loss)
    base_rows, base_loss = results["right", "right"]
    for rows, loss in results.values():
        torch.testing.assert_close(loss, base_loss, atol=1e-5, rtol=0)
        for got, ref in zip(rows, base_rows, strict=False):
            torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)


def test_concurrent_generation_does_not_interfere(tiny_llama):
    model, processor = tiny_llama
    texts, questions, images = _prompts(processor)
    jobs = []
    for i in range(len(texts)):
        inputs = processor(text=texts[i], images=[images[i]] if images[i] is not None else None, questions=questions[i])
        for q in (4, 16):
            jobs.append((inputs, q))
    expected = [_generate(model, inp, query_len=q).tolist() for inp, q in jobs]
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(jobs))

    def work(k):
        try:
            barrier.wait()
            for _ in range(2):
                got = _generate(model, jobs[k][0], query_len=jobs[k][1]).tolist()
                assert got == expected[k]
            results[k] = got
        except BaseException as err:  # reported below with the job index
            errors.append(err)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == len(jobs)
    # The per-call q really reaches the model: for some prompt the two q values answer differently.
    assert any(expected[k] != expected[k + 1] for k in range(0, len(jobs), 2))


def test_query_len_default_override_and_training_choice(tiny_llama):
    model, processor = tiny_llama
    assert model.config.default_query_len == 16  # the largest of "4,16"
    inputs = processor(
        text=processor.apply_chat_template(_messages("Hi"), add_generation_prompt=True),
        images=[_image(3)],
        questions="Hi",
    )
    n_ids = inputs["input_ids"].shape[1]
    n_patches = model.model.vision_tower.num_patches
    with torch.no_grad():
        default = model(**inputs).logits.shape[1]
        small = model(**inputs, query_len=4).logits.shape[1]
    assert default == n_ids - 2 + n_patches + 16
    assert small == n_ids - 2 + n_patches + 4
    with pytest.raises(ValueError, match="perfect square"):
        model(**inputs, query_len=5)
    model.train()
    try:
        seen = {model.model.select_query_len(None) for _ in range(64)}
    finally:
        model.eval()
    assert seen == {4, 16}


def test_multi_turn_has_latent_tokens_before_every_question(tiny_llama):
    model, processor = tiny_llama
    messages = [
        *_messages("What is this?"),
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "And its color?"},
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt.count("<vision_start><latent_image><vision_end>") == 2
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, images=[_image(4)])
    assert processor.decode(inputs["instruct_ids"][0]) == "And its color?"
    with torch.no_grad():
        out = model(**inputs)
    n = inputs["input_ids"].shape[1] - 3 + model.model.vision_tower.num_patches + 2 * 16
    assert out.logits.shape[1] == n
    new = _generate(model, inputs)
    assert new.shape == (1, 6)


def test_text_only_prompt_generates(tiny_llama):
    model, processor = tiny_llama
    inputs = processor.apply_chat_template(
        _messages("Tell me a story.", with_image=False), add_generation_prompt=True, tokenize=True
    )
    assert "pixel_values" not in inputs
    assert inputs["instruct_ids"].tolist() == [[0]]
    assert _generate(model, inputs).shape == (1, 6)
    # A prompt with no markers at all is a plain LLM call.
    plain = processor.tokenizer("hello there", return_tensors="pt")
    out = model.generate(**plain, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape == (1, plain["input_ids"].shape[1] + 3)


def test_interaction_layers_and_text_guidance_change_the_output(tiny_llama):
    model, processor = tiny_llama
    inputs = processor.apply_chat_template(
        _messages("What is here?"), add_generation_prompt=True, tokenize=True, images=[_image(5)]
    )
    with torch.no_grad():
        base = model(**inputs).logits
        other_question = dict(inputs, instruct_ids=processor.tokenizer("Count them", return_tensors="pt").input_ids)
        guided = model(**other_question).logits
        saved = model.model.vision_sampler_layers[0].layers[0].proj_out.linear_2.weight.clone()
        model.model.vision_sampler_layers[0].layers[0].proj_out.linear_2.weight.mul_(3)
        try:
            perturbed = model(**inputs).logits
        finally:
            model.model.vision_sampler_layers[0].layers[0].proj_out.linear_2.weight.copy_(saved)
    assert (base - guided).abs().max() > 1e-4
    assert (base - perturbed).abs().max() > 1e-4


def test_training_loss_parts_and_gradients_reach_every_component(tiny_llama):
    model, processor = tiny_llama
    conv = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A square."}]
    enc = processor.encode_conversation(conv, has_image=True)
    enc["pixel_values"] = processor.image_processor([_image(6)])["pixel_values"][0]
    text = processor.encode_conversation([{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}], False)
    batch = processor.collate([enc, text])
    model.zero_grad()
    out = model(**batch, query_len=16)
    expected = out.ce_loss + model.config.mapping_loss_weight * (out.text_loss + out.vision_loss)
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    for name in (
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight",
        "model.mm_projector.0.weight",
        "model.aux_projector.0.weight",
        "model.vision_sampler_layers.0.layers.0.proj_in.weight",
        "model.layers.0.mlp.down_proj.weight",
        "lm_head.weight",
        "model.embed_tokens.weight",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    model.zero_grad()


def test_truncation_warns_and_keeps_instruction_pairs_consistent(tiny_llama, caplog):
    model, processor = tiny_llama
    enc = processor.encode_conversation(
        [
            {"from": "human", "value": "<image>\nQ1?"},
            {"from": "gpt", "value": "A1."},
            {"from": "human", "value": "Q2?"},
            {"from": "gpt", "value": "A2."},
        ],
        has_image=True,
    )
    enc["pixel_values"] = processor.image_processor([_image(7)])["pixel_values"][0]
    batch = processor.collate([enc])
    first_answer = int((batch["labels"][0] == -400).nonzero()[0])
    merged_first = first_answer - 2 + model.model.vision_tower.num_patches + 16
    limit = merged_first + 3
    model.config.tokenizer_model_max_length = limit
    try:
        with caplog.at_level(logging.WARNING, logger="fusion.merge"), torch.no_grad():
            out = model(**batch, query_len=16)
    finally:
        model.config.tokenizer_model_max_length = 4096
    assert out.logits.shape[1] == limit
    assert any("truncated" in r.message for r in caplog.records)
    assert (out.labels != -100).sum() > 0


def test_save_and_reload_round_trip_keeps_reference_names(tiny_llama, tmp_path):
    model, processor = tiny_llama
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    for key in (
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight",
        "model.vision_tower.vision_tower.vision_model.embeddings.position_embedding.weight",
        "model.mm_projector.0.weight",
        "model.aux_projector.2.weight",
        "model.vision_sampler_layers.1.layers.0.cross_attn.k_proj.0.weight",
        "model.embed_tokens.weight",
        "lm_head.weight",
    ):
        assert key in keys, key
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == "fusion_llama" and "rope_theta" in cfg and cfg["vision_config"]["patch_size"] == 8
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(reloaded, fusion.FusionLlamaForCausalLM)
    again = fusion.FusionProcessor.from_pretrained(tmp_path)
    inputs = processor.apply_chat_template(
        _messages("Hi"), add_generation_prompt=True, tokenize=True, images=[_image(8)]
    )
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(**inputs).logits, model(**inputs).logits, atol=0, rtol=0)
    again_inputs = again.apply_chat_template(
        _messages("Hi"), add_generation_prompt=True, tokenize=True, images=[_image(8)]
    )
    for key in ("input_ids", "instruct_ids", "pixel_values"):
        assert torch.equal(again_inputs[key], inputs[key]), key


def test_reference_checkpoint_resaved_loads_identically(tmp_path):
    folder = next(p for p in sorted(fixtures_root().iterdir()) if (p / "golden.json").is_file())
    ckpt = folder / json.loads((folder / "golden.json").read_text())["checkpoint"]
    model = AutoModelForCausalLM.from_pretrained(ckpt).eval()
    assert isinstance(model, fusion.FusionForCausalLM)
    model.save_pretrained(tmp_path)
    with safe_open(ckpt / "model.safetensors", "pt") as f:
        reference_keys = set(f.keys())
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert set(f.keys()) == reference_keys
    again = fusion.FusionForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[1, 5, 9, -300, 9, -200, 12, 13]])
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids).logits, model(input_ids=ids).logits, atol=0, rtol=0)


def test_from_pretrained_keywords_override_config_fields(tmp_path):
    model, processor = build_tiny("llama")
    model.save_pretrained(tmp_path)
    config = fusion.FusionForCausalLM.from_pretrained(tmp_path).config
    wider = fusion.FusionForCausalLM.from_pretrained(tmp_path, config=config, window_size=4, dtype=torch.float32)
    assert wider.config.window_size == 4 and wider.dtype == torch.float32
    assert config.window_size == 2  # the caller's config is not changed behind its back
    inputs = processor.apply_chat_template(
        _messages("Hi"), add_generation_prompt=True, tokenize=True, images=[_image(8)]
    )
    with torch.no_grad():
        ref = fusion.FusionForCausalLM.from_pretrained(tmp_path).eval()(**inputs).logits
        out = wider.eval()(**inputs).logits
    assert not torch.allclose(out, ref)  # a wider window reads a different image context


def test_family_dispatch_and_unknown_type():
    config = tiny_config("qwen2")
    model = fusion.FusionForCausalLM(config)
    assert type(model) is fusion.FusionQwen2ForCausalLM and isinstance(model, fusion.FusionForCausalLM)
    assert type(fusion.FusionForCausalLM.from_config(tiny_config("phi"))) is fusion.FusionPhi3ForCausalLM
    with pytest.raises(ValueError, match="unknown FUSION model type"):
        fusion.FusionForCausalLM(AutoConfig.for_model("llama"))


def test_interaction_schedule_follows_config():
    config = tiny_config(
        "llama", num_of_vision_sampler_layers=3, start_of_vision_sampler_layers=1, stride_of_vision_sampler_layers=2
    )
    assert config.interaction_layer_indices == [1, 3]  # layer 5 does not exist
    model = fusion.FusionForCausalLM(config)
    assert len(model.model.vision_sampler_layers) == 3
    hooked = [i for i, layer in enumerate(model.model.layers) if layer._forward_hooks]
    assert hooked == [1, 3]
    big = tiny_config(
        "llama",
        num_hidden_layers=32,
        num_of_vision_sampler_layers=10,
        start_of_vision_sampler_layers=0,
        stride_of_vision_sampler_layers=3,
    )
    assert big.interaction_layer_indices == list(range(0, 30, 3))


def test_vision_tower_resolution(tmp_path):
    config = tiny_config("llama", vision_config=None, mm_vision_tower="google/siglip-so400m-patch14-384")
    vc = build_vision_config(config)
    assert (vc.num_hidden_layers, vc.num_attention_heads, vc.hidden_size, vc.patch_size) == (26, 16, 1152, 14)
    giant = build_vision_config(
        tiny_config("llama", vision_config=None, mm_vision_tower="google/siglip2-giant-opt-patch16-384")
    )
    assert (giant.num_hidden_layers, giant.hidden_size, giant.patch_size) == (39, 1536, 16)
    tower = tmp_path / "my-tower"
    tower.mkdir()
    (tower / "config.json").write_text(
        json.dumps(
            dict(
                hidden_size=48,
                intermediate_size=96,
                num_hidden_layers=7,
                num_attention_heads=6,
                patch_size=16,
                image_size=64,
            )
        )
    )
    local = build_vision_config(tiny_config("llama", vision_config=None, mm_vision_tower=str(tower)))
    assert (local.num_hidden_layers, local.num_attention_heads) == (6, 6)
    with pytest.raises(VisionTowerNotFoundError, match="some/unknown-tower"):
        build_vision_config(tiny_config("llama", vision_config=None, mm_vision_tower="some/unknown-tower"))


def test_paper_text_mask_differs_and_bad_mode_is_rejected():
    ref_model, processor = build_tiny("llama", seed=3)
    paper_model, _ = build_tiny("llama", seed=3, vision_text_mask="paper")
    inputs = processor.apply_chat_template(
        _messages("What?"), add_generation_prompt=True, tokenize=True, images=[_image(9)]
    )
    with torch.no_grad():
        assert (ref_model(**inputs).logits - paper_model(**inputs).logits).abs().max() > 1e-5
    with pytest.raises(ValueError, match="vision_text_mask"):
        build_tiny("llama", vision_text_mask="sometimes")


def test_bad_model_inputs_raise_clear_errors(tiny_llama):
    model, processor = tiny_llama
    inputs = processor.apply_chat_template(
        _messages("Hi"), add_generation_prompt=True, tokenize=True, images=[_image(10)]
    )
    with pytest.raises(ValueError, match=r"\[B, 5, 3, S, S\]"):
        model(
            input_ids=inputs["input_ids"],
            pixel_values=inputs["pixel_values"][:, :4],
            instruct_ids=inputs["instruct_ids"],
        )
    with pytest.raises(ValueError, match="pixel_values must be"):
        model(
            input_ids=inputs["input_ids"],
            pixel_values=torch.zeros(1, 5, 3, 32, 32),
            instruct_ids=inputs["instruct_ids"],
        )
    with pytest.raises(ValueError, match="batch"):
        model(
            input_ids=inputs["input_ids"],
            pixel_values=inputs["pixel_values"].repeat(2, 1, 1, 1, 1),
            instruct_ids=inputs["instruct_ids"],
        )
    with pytest.raises(ValueError, match="padding_side"):
        model(**inputs, padding_side="middle")


def test_qwen2_family_runs_and_trains(tiny_qwen2):
    model, processor = tiny_qwen2
    prompt = processor.apply_chat_template(_messages("Hi?"), add_generation_prompt=True)
    assert prompt == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<vision_start><latent_image><vision_end><vision_start><image><vision_end>\nHi?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    inputs = processor.apply_chat_template(
        _messages("Hi?"), add_generation_prompt=True, tokenize=True, images=[_image(11)]
    )
    assert _generate(model, inputs).shape == (1, 6)
    enc = processor.encode_conversation(
        [{"from": "human", "value": "<image>\nHi?"}, {"from": "gpt", "value": "Yes."}], has_image=True
    )
    answer = [t for t in enc["labels"].tolist() if t >= 0]
    assert processor.tokenizer.decode(answer) == "Yes.<|im_end|>"
    assert enc["labels"].tolist().count(-400) == 1


def test_shared_text_only_vision_keeps_logits_and_graph(tiny_llama):
    model, processor = tiny_llama
    img = processor.encode_conversation(
        [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A."}], has_image=True
    )
    img["pixel_values"] = processor.image_processor([_image(12)])["pixel_values"][0]
    text = processor.encode_conversation([{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hey."}], False)
    batch = processor.collate([img, text, text])
    with torch.no_grad():
        ref = model(**batch, text_only_vision="reference")
        shared = model(**batch, text_only_vision="shared")
    torch.testing.assert_close(shared.logits, ref.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(shared.ce_loss, ref.ce_loss)
    torch.testing.assert_close(shared.text_loss, ref.text_loss)
    assert not torch.allclose(shared.vision_loss, ref.vision_loss)  # zero images are left out of it
    # A batch without any image still reaches every vision parameter (no hang under DDP / ZeRO-3).
    model.zero_grad()
    out = model(**processor.collate([text, text]), text_only_vision="shared")
    out.loss.backward()
    for name in (
        "model.aux_projector.0.weight",
        "model.mm_projector.0.weight",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
    ):
        assert dict(model.named_parameters())[name].grad is not None, name
    model.zero_grad()
    with pytest.raises(ValueError, match="text_only_vision"):
        model(**batch, text_only_vision="none")


@pytest.mark.parametrize("text_mask", ["reference", "paper"])
@pytest.mark.parametrize("batch_invariant", [False, True])
@pytest.mark.parametrize("baseline", ["masked", "eager"])
def test_fused_vision_attention_equals_reference_formulations(text_mask, batch_invariant, baseline):
    from fusion.vision import FusionVisionTower

    model, _ = build_tiny("llama", seed=4, vision_text_mask=text_mask)
    tower = model.model.vision_tower
    reference = FusionVisionTower(tower.config, text_mask, attention=baseline)
    reference.load_state_dict(tower.state_dict())
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(3, 3, 64, 64, generator=g) * 2 - 1
    text = torch.randn(3, 5, tower.config.hidden_size, generator=g)
    valid = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0]], dtype=torch.bool)
    lengths = torch.tensor([3, 5, 4]) if batch_invariant else None
    with torch.no_grad():
        fast, h0_fast = tower(pixels, text, valid, lengths)
        slow, h0_slow = reference(pixels, text, valid, lengths)
        torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(h0_fast, h0_slow)
        torch.testing.assert_close(tower(pixels)[0], reference(pixels)[0], atol=1e-5, rtol=1e-5)
