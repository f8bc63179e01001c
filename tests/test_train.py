"""Training: a tiny model learns, 2 processes split the data, resume is exact, data problems are reported."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import fusion
from fusion.cli import main as fusion_main
from fusion.train import TrainingError, load_config, train
from fusion.train.config import ConfigError
from fusion.train.data import DataError, StepBatchSampler, apply_sampling, epoch_order, load_records

from .conftest import REPO, fixtures_root
from .train_utils import make_base_models, make_dataset

BASE = {
    "global_batch_size": 8,
    "micro_batch_size": 2,
    "lr": 2e-3,
    "vision_tower_lr": 2e-4,
    "warmup_ratio": 0.0,
    "mixed_precision": "no",
    "num_workers": 0,
    "report_to": [],
    "save_steps": 4,
    "save_total_limit": None,
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    llm, tower = make_base_models(root)
    rc = fusion_main(
        [
            "init",
            "--llm",
            str(llm),
            "--vision-tower",
            str(tower),
            "--out",
            str(root / "init"),
            "--query-len",
            "1,4",
            "--window-size",
            "2",
            "--interaction-layers",
            "2",
            "--interaction-start",
            "0",
            "--interaction-stride",
            "1",
        ]
    )
    assert rc == 0
    make_dataset(root, n=32)
    return root


def _config(root: Path, out: str, **overrides) -> Path:
    values = {
        **BASE,
        "model": str(root / "init"),
        "data": str(root / "data.json"),
        "image_folder": str(root / "images"),
        "output_dir": str(root / out),
        **overrides,
    }
    path = root / f"{out}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_init_builds_a_loadable_model_with_vision_tokens(workspace):
    model = fusion.FusionForCausalLM.from_pretrained(workspace / "init")
    processor = fusion.FusionProcessor.from_pretrained(workspace / "init")
    assert model.config.vision_config["num_hidden_layers"] == 3
    assert len(model.model.vision_tower.vision_tower.vision_model.encoder.layers) == 2  # last tower layer dropped
    vocab = processor.tokenizer.get_vocab()
    assert "<vision_start>" in vocab and "<vision_end>" in vocab
    base = load_file(workspace / "base-llm" / "model.safetensors")
    torch.testing.assert_close(model.model.layers[1].mlp.down_proj.weight, base["model.layers.1.mlp.down_proj.weight"])


def test_tiny_training_lowers_loss_and_result_loads(workspace):
    summary = train(load_config(_config(workspace, "run", max_steps=24, gradient_checkpointing=True)))
    out = workspace / "run"
    history = json.loads((out / "trainer_state.json").read_text())["history"]
    first, last = history[0]["loss"], sum(h["loss"] for h in history[-4:]) / 4
    assert last < 0.7 * first, (first, last)
    assert all(h["text_loss"] > 0 and h["vision_loss"] > 0 and h["ce_loss"] > 0 for h in history)
    assert summary["steps"] == 24 and summary["samples_skipped"] == 0
    model = fusion.FusionForCausalLM.from_pretrained(out).eval()
    processor = fusion.FusionProcessor.from_pretrained(out)
    inputs = processor.apply_chat_template(
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": str(workspace / "images" / "0.png")},
                    {"type": "text", "text": "What color is the square?"},
                ],
            }
        ],
        add_generation_prompt=True,
        tokenize=True,
    )
    new = model.generate(**inputs, max_new_tokens=3, do_sample=False)[0, inputs["input_ids"].shape[1] :]
    assert len(new) >= 1
    assert (out / "checkpoint-24" / "state").is_dir() and (out / "checkpoint-4").is_dir()


def test_resume_after_kill_equals_uninterrupted_run(workspace):
    cfg = _config(workspace, "straight", max_steps=12, gradient_checkpointing=False)
    train(load_config(cfg))
    killed_cfg = _config(workspace, "killed", max_steps=12, gradient_checkpointing=False)
    out = workspace / "killed"
    cmd = [sys.executable, "-m", "fusion.cli", "train", str(killed_cfg)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (out / "checkpoint-4").is_dir():
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "run_summary.json").exists(), "the run finished before the kill"
    rc = subprocess.run([*cmd, "--resume"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rc.returncode == 0, rc.stderr[-2000:]
    a = load_file(workspace / "straight" / "model.safetensors")
    b = load_file(out / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_two_processes_split_the_data(workspace):
    # A mixed dataset: with modality grouping some micro-batches hold no image at all.
    data, _ = make_dataset(workspace, n=24, text_only=8, name="mixed.json")
    cfg = _config(workspace, "ddp", max_steps=4, log_sample_ids=True, gradient_checkpointing=False, data=str(data))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "fusion.cli",
        "train",
        str(cfg),
    ]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stderr.count("[fusion] ") == 1  # one stage summary, from rank 0 only
    out = workspace / "ddp"
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 4 and summary["samples_seen"] == 32
    seen = [
        set(line.split("\t")[1].strip() for line in (out / f"samples.rank{r}.tsv").read_text().splitlines())
        for r in (0, 1)
    ]
    assert len(seen[0]) == len(seen[1]) == 16 and not seen[0] & seen[1]
    assert fusion.FusionForCausalLM.from_pretrained(out) is not None


def test_bad_images_are_skipped_counted_and_can_stop_the_run(tmp_path, workspace):
    root = tmp_path
    make_dataset(root, n=30, seed=1, bad=2)
    values = {
        **BASE,
        "model": str(workspace / "init"),
        "data": str(root / "data.json"),
        "image_folder": str(root / "images"),
        "output_dir": str(root / "out"),
        "num_epochs": 1,
        "max_skip_rate": 0.2,
        "min_samples_before_skip_check": 1,
        "save_steps": 0,
    }
    summary = train(load_config(None, values))
    assert summary["samples_skipped"] == 2 and sorted(summary["skipped_ids"]) == ["bad0", "bad1"]
    assert json.loads((root / "out" / "run_summary.json").read_text())["samples_skipped"] == 2
    strict = {**values, "max_skip_rate": 0.0, "output_dir": str(root / "strict")}
    with pytest.raises(TrainingError, match="max_skip_rate"):
        train(load_config(None, strict))


def test_fully_masked_batch_stops_the_run(workspace):
    values = {
        **BASE,
        "model": str(workspace / "init"),
        "data": str(workspace / "data.json"),
        "image_folder": str(workspace / "images"),
        "output_dir": str(workspace / "masked"),
        "max_steps": 2,
        "max_length": 12,
    }
    with pytest.raises(TrainingError, match="every label masked"):
        train(load_config(None, values))


def test_trainer_loss_equals_reference_train_batch(tmp_path):
    folder = next(p for p in sorted(fixtures_root().iterdir()) if (p / "golden.json").is_file())
    golden = json.loads((folder / "golden.json").read_text())
    expected = float(load_file(folder / "golden.safetensors")["train_batch/loss"])
    samples = golden["train_samples"]
    (tmp_path / "data.json").write_text(json.dumps(samples))
    model_dir = folder / golden["checkpoint"]
    values = {
        **BASE,
        "model": str(model_dir),
        "data": str(tmp_path / "data.json"),
        "image_folder": str(folder),
        "output_dir": str(tmp_path / "out"),
        "global_batch_size": len(samples),
        "micro_batch_size": len(samples),
        "max_steps": 1,
        "lr": 0.0,
        "vision_tower_lr": 0.0,
        "save_steps": 0,
        "max_length": 4096,
        "reference_exact_loss": True,
    }
    train(load_config(None, values))
    history = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["history"]
    assert abs(history[0]["loss"] - expected) < 1e-4


def test_mixture_sampling_strategies(tmp_path):
    records = [{"id": str(i), "conversations": []} for i in range(10)]
    assert [r["id"] for r in apply_sampling(records, "first:3", 0)] == ["0", "1", "2"]
    assert [r["id"] for r in apply_sampling(records, "end:2", 0)] == ["8", "9"]
    assert len(apply_sampling(records, "all", 0)) == 10
    picked = apply_sampling(records, "random:4", 7)
    assert len(picked) == 4 and picked == apply_sampling(records, "random:4", 7)
    assert [int(r["id"]) for r in picked] == sorted(int(r["id"]) for r in picked)
    assert len(apply_sampling(records, "random:25%", 0)) == 3
    with pytest.raises(DataError, match="sampling_strategy"):
        apply_sampling(records, "some:3", 0)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.json").write_text(json.dumps(records))
    (tmp_path / "sub" / "b.jsonl").write_text(
        "\n".join(json.dumps({"id": f"b{i}", "conversations": []}) for i in range(5))
    )
    (tmp_path / "mix.yaml").write_text(
        yaml.safe_dump(
            {
                "datasets": [
                    {"json_path": "sub/a.json", "sampling_strategy": "first:2"},
                    {"json_path": "sub/b.jsonl", "sampling_strategy": "end:1"},
                ]
            }
        )
    )
    assert [r["id"] for r in load_records(tmp_path / "mix.yaml")] == ["0", "1", "b4"]
    (tmp_path / "broken.jsonl").write_text('{"id": 1}\n{not json}\n')
    with pytest.raises(DataError, match=r"broken.jsonl:2"):
        load_records(tmp_path / "broken.jsonl")


def test_data_order_is_deterministic_grouped_and_disjoint_across_ranks():
    lengths = [i % 7 for i in range(64)]
    modal = [i % 3 == 0 for i in range(64)]
    order = epoch_order(lengths, modal, 8, seed=1, epoch=0, group_by_length=True)
    assert sorted(order) == list(range(64)) and order == epoch_order(lengths, modal, 8, 1, 0, True)
    assert order != epoch_order(lengths, modal, 8, 1, 1, True)
    ranks = [list(StepBatchSampler(order, 8, 2, 2, r)) for r in (0, 1)]
    flat = [set(i for b in rb for i in b) for rb in ranks]
    assert not flat[0] & flat[1] and len(flat[0] | flat[1]) == 64
    resumed = list(StepBatchSampler(order, 8, 2, 2, 0, start_step=3))
    assert resumed == ranks[0][3 * 2 :]
    with pytest.raises(DataError, match="multiple"):
        StepBatchSampler(order, 8, 3, 2, 0)


def test_config_errors_and_overrides(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lr: 1.0e-4\nfreeze: {vision_tower: true}\nmixed_precision: no\n")
    config = load_config(cfg, {"micro_batch_size": "3", "freeze.llm": "true", "report_to": "tensorboard"})
    assert config.lr == 1e-4 and config.micro_batch_size == 3 and config.mixed_precision == "no"
    assert config.freeze.vision_tower and config.freeze.llm and config.report_to == ["tensorboard"]
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(cfg, {"learning_rate": "1"})
    with pytest.raises(ConfigError, match="expected int"):
        load_config(cfg, {"micro_batch_size": "many"})


def test_data_check_reports_problems_with_ids(workspace, tmp_path, capsys):
    records = json.loads((workspace / "data.json").read_text())[:3]
    records += [
        {"id": "missing-img", "image": "nope.png", "conversations": records[0]["conversations"]},
        {"id": "no-conv", "image": "0.png"},
        {"id": "marker-without-image", "conversations": records[0]["conversations"]},
    ]
    images = tmp_path / "images"
    shutil.copytree(workspace / "images", images)
    good = (images / "1.png").read_bytes()
    (images / "trunc.png").write_bytes(good[: len(good) // 2])
    records.append({"id": "truncated", "image": "trunc.png", "conversations": records[0]["conversations"]})
    (tmp_path / "d.json").write_text(json.dumps(records))
    rc = fusion_main(
        ["data", "check", str(tmp_path / "d.json"), "--image-folder", str(images), "--model", str(workspace / "init")]
    )
    out = capsys.readouterr().out
    assert rc == 1
    flagged = {line.split("\t")[0] for line in out.splitlines()}
    assert flagged == {"missing-img", "no-conv", "marker-without-image", "truncated"}


def test_lora_training_saves_adapter_and_trainables(workspace):
    values = {
        **BASE,
        "model": str(workspace / "init"),
        "data": str(workspace / "data.json"),
        "image_folder": str(workspace / "images"),
        "output_dir": str(workspace / "lora"),
        "max_steps": 2,
        "save_steps": 0,
        "lora": {"enabled": True, "r": 4, "alpha": 8},
    }
    train(load_config(None, values))
    out = workspace / "lora"
    assert (out / "checkpoint-2" / "adapter" / "adapter_config.json").is_file()
    trainables = torch.load(out / "checkpoint-2" / "non_lora_trainables.bin")
    assert any(k.endswith("mm_projector.0.weight") for k in trainables)
    merged = fusion.FusionForCausalLM.from_pretrained(out)
    base = fusion.FusionForCausalLM.from_pretrained(workspace / "init")
    assert not torch.equal(merged.model.layers[0].self_attn.q_proj.weight, base.model.layers[0].self_attn.q_proj.weight)


@pytest.mark.parametrize("grouped", [False, True])
def test_warmup_trains_the_decoder_alone_and_loss_falls(workspace, tmp_path, grouped):
    """Stage 0 changes every decoder tensor and nothing on the vision side, and its loss falls, with
    mixed or length-grouped batches."""
    from fusion.train.warmup import WarmupConfig, decoder_config, fresh_decoder, plain_decoder_class, warm_up

    data, _ = make_dataset(tmp_path, n=0, text_only=24)
    rng_state = torch.random.get_rng_state()
    init = fusion.FusionForCausalLM.from_pretrained(workspace / "init")
    one, two = fresh_decoder(init, seed=0).state_dict(), fresh_decoder(init, seed=0).state_dict()
    assert torch.equal(rng_state, torch.random.get_rng_state())  # seeded apart from the global RNG
    assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)
    config = WarmupConfig(steps=40, batch_size=8, lr=3e-3, log_every=5, group_by_length=grouped)
    summary = warm_up(workspace / "init", [data], tmp_path / "w", config)
    history = summary["history"]
    assert summary["samples"] == 24 and history[-1]["step"] == 40
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    before = load_file(workspace / "init" / "model.safetensors")
    after = load_file(tmp_path / "w" / "model.safetensors")
    assert before.keys() == after.keys()
    model = fusion.FusionForCausalLM.from_pretrained(workspace / "init")
    with torch.device("meta"):
        decoder = set(plain_decoder_class(model)(decoder_config(model)).state_dict())
    assert decoder and any(k.startswith("model.vision_tower.") for k in before)
    for name in before:
        assert torch.equal(before[name], after[name]) != (name in decoder), name
    # The plain decoder's text loss is what stage 0 optimised: the FUSION checkpoint carries it intact.
    assert json.loads((tmp_path / "w" / "warmup_state.json").read_text())["final_loss"] == history[-1]["loss"]


def test_warmup_loss_on_all_tokens_also_learns_the_questions(workspace, tmp_path):
    """`--loss-on all` trains next-token prediction on the whole conversation; the default trains the
    answers alone, so only the former learns to predict the (unlabelled by default) question tokens."""
    from fusion.constants import IGNORE_INDEX
    from fusion.train.warmup import WarmupConfig, encode_text_records, fresh_decoder, warm_up

    data, _ = make_dataset(tmp_path, n=0, text_only=24)
    processor = fusion.FusionProcessor.from_pretrained(workspace / "init")
    samples = encode_text_records(json.loads(data.read_text()), processor, 2048)
    batch = processor.collate(samples)
    question = torch.where(batch["labels"] == IGNORE_INDEX, batch["input_ids"], IGNORE_INDEX)
    question[batch["attention_mask"] == 0] = IGNORE_INDEX

    def question_loss(folder: Path) -> float:
        model = fusion.FusionForCausalLM.from_pretrained(folder)
        decoder = fresh_decoder(model, seed=0)
        decoder.load_state_dict({k: v for k, v in model.state_dict().items() if k in decoder.state_dict()})
        with torch.no_grad():
            out = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=question)
        return out.loss.item()

    losses = {}
    for loss_on in ("answers", "all"):
        config = WarmupConfig(steps=30, batch_size=8, lr=3e-3, log_every=10, loss_on=loss_on)
        warm_up(workspace / "init", [data], tmp_path / loss_on, config)
        losses[loss_on] = question_loss(tmp_path / loss_on)
    assert losses["all"] < 0.5 * losses["answers"], losses
    with pytest.raises(ValueError, match="loss_on"):
        warm_up(workspace / "init", [data], tmp_path / "bad", WarmupConfig(steps=1, loss_on="questions"))


def test_warmup_in_two_processes_takes_the_one_process_step(workspace, tmp_path):
    """`torchrun ... fusion warmup`: each process takes half of every batch, and the loss is divided by the
    whole batch's answer tokens, so the decoder and the logged losses are those of one process. The
    answers differ in length, so a per-process mean (each half weighted alike) would give other weights."""
    from fusion.train.warmup import WarmupConfig, warm_up

    records = []
    for i in range(16):
        answer = " ".join(["red", "green", "blue"][: 1 + i % 3] * (1 + i % 4))
        turns = [{"from": "human", "value": f"Name {1 + i % 4} colors, please."}, {"from": "gpt", "value": answer}]
        records.append({"id": f"t{i}", "conversations": turns})
    data = tmp_path / "text.json"
    data.write_text(json.dumps(records))
    steps, batch, lr = 6, 8, 3e-3
    one = warm_up(
        workspace / "init", [data], tmp_path / "one", WarmupConfig(steps=steps, batch_size=batch, lr=lr, log_every=1)
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29537"]
    cmd += ["-m", "fusion.cli", "warmup", "--model", str(workspace / "init"), "--data", str(data)]
    cmd += ["--out", str(tmp_path / "two"), "--steps", str(steps), "--batch-size", str(batch), "--lr", str(lr)]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stderr.count("[fusion] stage 0") == 1 and "in 2 process(es)" in res.stderr
    two = json.loads((tmp_path / "two" / "warmup_state.json").read_text())
    assert two["processes"] == 2 and one["processes"] == 1
    assert two["final_loss"] == pytest.approx(one["final_loss"], abs=1e-3)
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    init = load_file(workspace / "init" / "model.safetensors")
    moved = [k for k in a if not torch.equal(a[k], init[k])]
    assert len(moved) > 10
    for key in moved:
        torch.testing.assert_close(b[key], a[key], atol=2e-5, rtol=1e-4, msg=key)
    cmd[cmd.index("--batch-size") + 1] = "7"
    cmd[cmd.index("--out") + 1] = str(tmp_path / "odd")
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode != 0 and "batch_size 7 is not a multiple of the 2 processes" in res.stderr
    assert not (tmp_path / "odd").exists()


def test_warmup_refuses_image_samples_with_their_id(workspace, tmp_path, capsys):
    data, _ = make_dataset(tmp_path, n=2, text_only=3)
    rc = fusion_main(["warmup", "--model", str(workspace / "init"), "--data", str(data), "--out", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert rc == 2 and "sample s0 has an image" in err and "Traceback" not in err
    assert not (tmp_path / "w").exists()

    from fusion.train.warmup import warm_up

    long = tmp_path / "long.json"
    turns = [{"from": "human", "value": "How many red stars? " * 2000}, {"from": "gpt", "value": "Two."}]
    long.write_text(json.dumps([{"id": "long0", "conversations": turns}]))
    with pytest.raises(DataError, match=r"sample long0 has \d+ tokens, more than the decoder's 2048"):
        warm_up(workspace / "init", [long], tmp_path / "w")


def _counting_corpus(tmp_path: Path) -> Path:
    """A 20-conversation LLaVA-format file: enough text to train a tiny tokenizer on."""
    corpus = tmp_path / "corpus.json"
    turns = [[{"from": "human", "value": f"How many stars? {i}"}, {"from": "gpt", "value": str(i)}] for i in range(20)]
    corpus.write_text(json.dumps([{"id": str(i), "conversations": t} for i, t in enumerate(turns)]))
    return corpus


def test_tiny_init_shares_a_decoder_across_vision_configs(tmp_path):
    """`python -m fusion.tiny --decoder`: an ablation's fresh model takes an earlier run's decoder exactly
    while its own vision side stays fresh; another tokenizer or LLM size is refused."""
    from fusion.tiny import init_from_corpus
    from fusion.tiny import main as tiny_main
    from fusion.train.warmup import copy_decoder

    corpus = _counting_corpus(tmp_path)
    first = init_from_corpus([corpus], tmp_path / "a", vocab_size=400, seed=0)
    tiny_main(
        [
            "--corpus",
            str(corpus),
            "--vocab-size",
            "400",
            "--seed",
            "1",
            "--decoder",
            str(first),
            "--set",
            "num_of_vision_sampler_layers=0",
            "--out",
            str(tmp_path / "b"),
        ]
    )
    a, b = load_file(first / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert not any(k.startswith("model.vision_sampler_layers.") for k in b)
    brief = init_from_corpus([corpus], tmp_path / "e", vocab_size=400, system_prompt="Be brief.")
    for folder, system in ((first, "You are a helpful, highly intelligent"), (brief, "Be brief.<|eot_id|>")):
        prompt = fusion.FusionProcessor.from_pretrained(folder).render([{"role": "user", "content": "Hi"}])
        assert f"system<|end_header_id|>\n\n{system}" in prompt
    shared = [k for k in b if not k.startswith(("model.vision_tower.", "model.mm_projector.", "model.aux_projector."))]
    assert len(shared) > 10 and all(torch.equal(a[k], b[k]) for k in shared)
    assert not torch.equal(a["model.mm_projector.0.weight"], b["model.mm_projector.0.weight"])

    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"id": "0", "conversations": [{"from": "human", "value": "Hello there"}]}]))
    with pytest.raises(SystemExit):
        tiny_main(
            ["--corpus", str(other), "--vocab-size", "400", "--decoder", str(first), "--out", str(tmp_path / "c")]
        )
    wide = init_from_corpus([corpus], tmp_path / "d", vocab_size=400, hidden_size=64)
    with pytest.raises(ValueError, match="hidden_size"):
        copy_decoder(fusion.FusionForCausalLM.from_pretrained(wide), fusion.FusionForCausalLM.from_pretrained(first))


def test_tiny_init_can_start_the_tower_from_sincos_positions(tmp_path):
    """`--vision-positions sincos`: the tower's (still learned) position embeddings start from 2-D codes
    at the patch embedding's scale (or `--vision-position-scale` times it), in which each patch's column
    and row can be read back."""
    from fusion.tiny import main as tiny_main
    from fusion.tiny import sincos_positions

    codes = sincos_positions(8, 96)
    assert codes.shape == (64, 96) and abs(codes.square().mean().item() - 1.0) < 1e-5
    grid = codes.view(8, 8, 96)
    assert torch.equal(grid[:, 3, :48], grid[:, 3, :48][:1].expand(8, 48))  # column half: same down a column
    assert torch.equal(grid[2, :, 48:], grid[2, :, 48:][:1].expand(8, 48))  # row half: same along a row
    lowest_sin = grid[0, :, 23]  # the slowest column frequency: grows from left to right
    assert bool((lowest_sin.diff() > 0).all())
    nearest = torch.cdist(codes, codes).argmin(dim=1)
    assert torch.equal(nearest, torch.arange(64))  # every patch's code is distinct

    corpus = _counting_corpus(tmp_path)
    common = ["--corpus", str(corpus), "--vocab-size", "400"]
    tiny_main([*common, "--vision-positions", "sincos", "--out", str(tmp_path / "s")])
    tiny_main([*common, "--out", str(tmp_path / "r")])
    tiny_main([*common, "--vision-positions", "sincos", "--vision-position-scale", "5", "--out", str(tmp_path / "l")])
    key = "model.vision_tower.vision_tower.vision_model.embeddings.position_embedding.weight"
    s, r = load_file(tmp_path / "s" / "model.safetensors"), load_file(tmp_path / "r" / "model.safetensors")
    large = load_file(tmp_path / "l" / "model.safetensors")
    assert torch.equal(s[key], sincos_positions(8, 96)) and not torch.equal(r[key], s[key])
    assert torch.allclose(large[key], 5 * s[key]) and abs(large[key].square().mean().sqrt().item() - 5) < 1e-4
    assert all(torch.equal(s[k], r[k]) and torch.equal(s[k], large[k]) for k in s if k != key)  # nothing else
    for bad in (["--vision-position-scale", "0", "--vision-positions", "sincos"], ["--vision-position-scale", "2"]):
        with pytest.raises(SystemExit):  # a scale that is not positive, or without sincos codes: a usage error
            tiny_main([*common, *bad, "--out", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()
