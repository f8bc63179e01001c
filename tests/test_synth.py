"""Data synthesis against a fake OpenAI-compatible server, and the exact procedural backend."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fusion.synth.pipeline import Pipeline, SynthConfigError, finalize_outputs, load_pipeline
from fusion.synth.scene import COLORS, NUMBER_WORDS, Scene, SceneObject, describe, exact_qa, random_scene, render
from fusion.synth.store import JsonlStore

from .conftest import REPO
from .fake_openai import FakeOpenAI

CAPTIONS = [f"caption {i}: a {c} object on a table" for i, c in enumerate(["red", "blue", "green", "tall"] * 4)]
CAPTIONS += ["a MALFORMED caption one", "a FLAKY caption two", "a SLOW caption three", "a MALFORMED FLAKY caption"]


def _pipeline_yaml(tmp: Path, url: str, out: str, **extra) -> Path:
    (tmp / "captions.txt").write_text("\n".join(CAPTIONS) + "\n")
    cfg = {
        "output_dir": out,
        "image_backend": "http",
        "captions": ["captions.txt"],
        "instruction_types": ["multiple_choice", "short_conversation", "contrast_short"],
        "llm": {
            "base_url": url,
            "model": "fake",
            "concurrency": 4,
            "max_retries": 3,
            "backoff_s": 0.01,
            "timeout_s": 30,
        },
        "http_images": {"url": url + "/images/generations"},
        **extra,
    }
    path = tmp / f"{out}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _data(out: Path) -> list[dict]:
    return json.loads((out / "data.json").read_text())


def test_full_run_on_20_captions_with_rejects_and_stats(tmp_path):
    with FakeOpenAI() as fake:
        stats = Pipeline(load_pipeline(_pipeline_yaml(tmp_path, fake.url, "full"))).run()
    out = tmp_path / "full"
    data = _data(out)
    rejects = [json.loads(x) for x in (out / "rejects_all.jsonl").read_text().splitlines()]
    malformed = {r["record_id"] for r in rejects if r["stage"] == "qa" and "QAFormatError" in r["reason"]}
    # Both MALFORMED captions fail QA parsing; the FLAKY one succeeds after retries.
    assert len(malformed) == 2
    assert stats["records"] == len(data) == 18
    assert stats["per_stage"]["captions"] and sum(stats["per_stage"]["captions"].values()) == 20
    assert any(k.startswith("qa: QAFormatError") for k in stats["rejections"])
    for record in data:
        assert record["conversations"][0]["value"].startswith("<image>\n")
        assert (out / record["image"]).is_file()
        if record["instruction_type"] == "multiple_choice":
            assert record["conversations"][1]["value"] == "A"
            assert "A. " in record["conversations"][0]["value"]
    contrast = [r for r in data if r["instruction_type"] == "contrast_short"]
    assert contrast and Image.open(out / contrast[0]["image"]).width > 32  # two images side by side
    assert fake.calls[next(p for p in fake.calls if "FLAKY caption two" in p and p.startswith("Expand"))] == 3


def test_kill_and_resume_gives_identical_output(tmp_path):
    with FakeOpenAI(delay_s=0.05) as fake:
        Pipeline(load_pipeline(_pipeline_yaml(tmp_path, fake.url, "straight"))).run()
        cfg = _pipeline_yaml(tmp_path, fake.url, "killed")
        cmd = [sys.executable, "-m", "fusion.cli", "synth", "run", str(cfg)]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        descriptions = tmp_path / "killed" / "descriptions.jsonl"
        deadline = time.time() + 120
        while not (descriptions.exists() and len(descriptions.read_text().splitlines()) >= 5):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (tmp_path / "killed" / "data.json").exists()
        res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
    a, b = tmp_path / "straight", tmp_path / "killed"
    assert (a / "data.json").read_text() == (b / "data.json").read_text()
    assert (a / "rejects_all.jsonl").read_text() == (b / "rejects_all.jsonl").read_text()
    ids = [r["id"] for r in JsonlStore(b / "descriptions.jsonl")]
    assert len(ids) == len(set(ids))  # nothing written twice
    for record in _data(a):
        assert (a / record["image"]).read_bytes() == (b / record["image"]).read_bytes()


def test_two_shards_merged_equal_one_run(tmp_path):
    with FakeOpenAI() as fake:
        Pipeline(load_pipeline(_pipeline_yaml(tmp_path, fake.url, "single"))).run()
        cfg = load_pipeline(_pipeline_yaml(tmp_path, fake.url, "sharded"))
        for i in range(2):
            assert Pipeline(cfg, shard=(i, 2)).run(finalize=False) is None
    shard_files = sorted(p.name for p in (tmp_path / "sharded").glob("captions*.jsonl"))
    assert shard_files == ["captions.shard0of2.jsonl", "captions.shard1of2.jsonl"]
    finalize_outputs([tmp_path / "sharded"], tmp_path / "sharded", cfg.filters)
    assert _data(tmp_path / "single") == _data(tmp_path / "sharded")


def test_procedural_qa_matches_the_scene_spec(tmp_path):
    cfg_path = tmp_path / "p.yaml"
    cfg_path.write_text(yaml.safe_dump({"output_dir": "proc", "image_backend": "procedural", "num_scenes": 40}))
    Pipeline(load_pipeline(cfg_path)).run()
    out = tmp_path / "proc"
    scenes = {r["id"]: Scene.from_dict(r["scene"]) for r in JsonlStore(out / "captions.jsonl")}
    data = _data(out)
    assert len(data) >= 30 and {r["category"] for r in data} == {
        "SynthColor",
        "SynthCount",
        "SynthSpatial",
        "SynthScene",
        "SynthText",
    }
    for record in data:
        scene = scenes[record["id"]]
        pixels = np.asarray(Image.open(out / record["image"]))
        for obj in scene.objects:  # what the spec says is drawn where it says
            assert tuple(pixels[obj.y, obj.x]) == COLORS[obj.color]
        turns = record["conversations"]
        for q, a in zip(turns[0::2], turns[1::2], strict=True):
            question = q["value"].removeprefix("<image>\n").split("\n")[0]
            answer = a["value"]
            if question.startswith("How many"):
                assert answer == NUMBER_WORDS[len(scene.objects)].capitalize()
            elif question == "What word is written in the image?":
                assert answer == scene.text
            elif question == "What color is the leftmost shape?":
                assert answer == scene.objects[0].color.capitalize()
            elif question == "What color is the rightmost shape?":
                assert answer == scene.objects[-1].color.capitalize()
            elif question.startswith("What color is the "):
                shape = question.removeprefix("What color is the ").rstrip("?")
                assert answer == next(o.color for o in scene.objects if o.shape == shape).capitalize()
            elif " to the left or to the right of " in question:
                first = question.removeprefix("Is the ").split(" to the left")[0]
                by_name = {f"{o.color} {o.shape}": o for o in scene.objects}
                other = next(n for n in by_name if n != first)
                assert answer == ("Left" if by_name[first].x < by_name[other].x else "Right")
            elif question.startswith("Is there "):
                article, color, shape = question.removeprefix("Is there ").removesuffix(" in the image?").split()
                assert article == ("an" if color[0] in "aeiou" else "a")
                present = any((o.color, o.shape) == (color, shape) for o in scene.objects)
                assert answer == ("Yes" if present else "No")


def test_exact_qa_is_true_for_many_random_scenes():
    rng = random.Random(0)
    articles = set()
    for n in range(200):
        category = ["SynthColor", "SynthCount", "SynthSpatial", "SynthScene", "SynthText"][n % 5]
        scene = random_scene(rng, category)
        img = np.asarray(render(scene))
        assert all(tuple(img[o.y, o.x]) == COLORS[o.color] for o in scene.objects)
        xs = [o.x for o in scene.objects]
        assert xs == sorted(xs) and len(set(xs)) == len(xs)
        for q, a in exact_qa(scene, category, rng):
            if q.startswith("How many") and category == "SynthCount":
                assert len({o.shape for o in scene.objects}) == 1
                assert a == NUMBER_WORDS[len(scene.objects)].capitalize()
            if q.startswith("Is there "):  # "an orange circle", "a red circle"
                article, color = q.split()[2:4]
                assert article == ("an" if color[0] in "aeiou" else "a")
                articles.add(article)
    assert articles == {"a", "an"}  # both forms were checked


def test_bad_pipeline_configs_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"image_backend": "procedural", "categories": ["SynthSmell"]}))
    with pytest.raises(SynthConfigError, match="unknown category"):
        load_pipeline(bad)
    bad.write_text(yaml.safe_dump({"image_backend": "http", "captions": ["c.txt"]}))
    with pytest.raises(SynthConfigError, match="base_url"):
        load_pipeline(bad)
    bad.write_text(yaml.safe_dump({"colour": 1}))
    with pytest.raises(SynthConfigError, match="unknown key"):
        load_pipeline(bad)


def test_torn_last_line_is_recovered(tmp_path):
    store = JsonlStore(tmp_path / "s.jsonl")
    store.append({"id": "a", "x": 1})
    with open(tmp_path / "s.jsonl", "a") as f:
        f.write('{"id": "b", "x"')  # a crash mid-write
    again = JsonlStore(tmp_path / "s.jsonl")
    assert again.ids == {"a"}
    again.append({"id": "b", "x": 2})
    again.append({"id": "b", "x": 3})
    assert [r["x"] for r in JsonlStore(tmp_path / "s.jsonl")] == [1, 2]


def test_vlm_judge_rejects_inconsistent_records(tmp_path):
    with FakeOpenAI() as fake:
        cfg = _pipeline_yaml(
            tmp_path, fake.url, "judged", judge={"enabled": True, "use_image": True}, filters={"min_consistency": 0.5}
        )
        stats = Pipeline(load_pipeline(cfg)).run()
        assert fake.vision_calls >= 16  # the judge saw the images
    data = _data(tmp_path / "judged")
    assert data and not any("tall" in json.dumps(r) for r in data)
    assert any(k.startswith("judged: QAFormatError") for k in stats["rejections"])
    judged = list(JsonlStore(tmp_path / "judged" / "judged.jsonl"))
    assert judged and all(r["consistency"] == 0.9 for r in judged)


def test_procedural_duplicates_are_kept_only_when_asked(tmp_path):
    """Scenes with the same caption are different images: `deduplicate: false` keeps every one."""
    kept = {}
    for name, filters in {"dedup": {}, "keep": {"deduplicate": False}}.items():
        cfg = {"output_dir": name, "image_backend": "procedural", "num_scenes": 150, "seed": 5}
        cfg |= {"instruction_types": ["caption"], "filters": {"near_duplicate_jaccard": None, **filters}}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        Pipeline(load_pipeline(tmp_path / f"{name}.yaml")).run()
        kept[name] = _data(tmp_path / name)
    captions = [r["conversations"][1]["value"] for r in kept["keep"]]
    assert len(kept["keep"]) == 150 and len({r["image"] for r in kept["keep"]}) == 150
    assert len(set(captions)) < 150  # the seed does repeat captions...
    assert len(kept["dedup"]) == len(set(captions))  # ...and the default drops the repeats


def test_merge_applies_the_filters_the_shards_ran_with(tmp_path):
    """`fusion synth merge` uses the run's recorded filters, not the defaults (which would drop the
    repeated captions `deduplicate: false` keeps), and a folder cannot mix runs of other filters."""
    cfg = {"output_dir": "out", "image_backend": "procedural", "num_scenes": 150, "seed": 5}
    cfg |= {"instruction_types": ["caption"], "filters": {"near_duplicate_jaccard": None, "deduplicate": False}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    for i in range(2):
        assert Pipeline(load_pipeline(tmp_path / "p.yaml"), shard=(i, 2)).run(finalize=False) is None
    res = subprocess.run(
        [sys.executable, "-m", "fusion.cli", "synth", "merge", str(tmp_path / "out")], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert len(_data(tmp_path / "out")) == 150
    cfg["filters"]["deduplicate"] = True
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(SynthConfigError, match="other filters"):
        Pipeline(load_pipeline(tmp_path / "other.yaml")).run()
    (tmp_path / "out" / "filters.json").unlink()  # a folder from before runs recorded their filters
    res = subprocess.run(
        [sys.executable, "-m", "fusion.cli", "synth", "merge", str(tmp_path / "out")], capture_output=True, text=True
    )
    assert res.returncode != 0 and "--pipeline" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "fusion.cli",
            "synth",
            "merge",
            str(tmp_path / "out"),
            "--pipeline",
            str(tmp_path / "p.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert len(_data(tmp_path / "out")) == 150


def test_procedural_short_suffix_ratio_asks_some_questions_plainly(tmp_path):
    """`short_suffix_ratio` leaves the suffix off a share of short-answer questions (chat-style prompts);
    multiple-choice prompts keep theirs, and the default changes nothing."""
    texts = {}
    for name, ratio in {"all": 1.0, "mixed": 0.5}.items():
        cfg = {"output_dir": name, "image_backend": "procedural", "num_scenes": 60, "seed": 7}
        cfg |= {"instruction_types": ["short_conversation", "multiple_choice"], "short_suffix_ratio": ratio}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        Pipeline(load_pipeline(tmp_path / f"{name}.yaml")).run()
        texts[name] = [t["value"] for r in _data(tmp_path / name) for t in r["conversations"][0::2]]
    suffix = "Answer the question using a single word or phrase."
    assert all(suffix in t or "letter" in t for t in texts["all"])
    plain = [t for t in texts["mixed"] if suffix not in t and "letter" not in t]
    short = [t for t in texts["mixed"] if suffix in t]
    assert len(plain) > 10 and len(short) > 10 and all(t.rstrip().endswith("?") for t in plain)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"image_backend": "procedural", "short_suffix_ratio": 1.5}))
    with pytest.raises(SynthConfigError, match="short_suffix_ratio"):
        load_pipeline(bad)


def test_resuming_with_other_content_settings_is_refused_and_keeps_the_outputs(tmp_path):
    """A resumed run keeps its stored records: resuming with another short_suffix_ratio (or seed, ...)
    would mix two datasets, so it is refused naming the setting, the folder is left as it was, and the
    CLI says so without a traceback. Extending num_scenes is a resume like any other."""
    cfg = {"output_dir": "out", "image_backend": "procedural", "num_scenes": 20, "seed": 7}
    cfg |= {"instruction_types": ["short_conversation"], "short_suffix_ratio": 1.0}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    Pipeline(load_pipeline(tmp_path / "p.yaml")).run()
    before = (tmp_path / "out" / "qa.jsonl").read_bytes()
    (tmp_path / "q.yaml").write_text(yaml.safe_dump(cfg | {"short_suffix_ratio": 0.5}))
    with pytest.raises(SynthConfigError, match=r"other settings \(short_suffix_ratio=1\.0\); use another"):
        Pipeline(load_pipeline(tmp_path / "q.yaml")).run()
    assert (tmp_path / "out" / "qa.jsonl").read_bytes() == before
    res = subprocess.run(
        [sys.executable, "-m", "fusion.cli", "synth", "run", str(tmp_path / "q.yaml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.returncode != 0 and "short_suffix_ratio" in res.stderr and "Traceback" not in res.stderr
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg | {"num_scenes": 30}))
    Pipeline(load_pipeline(tmp_path / "p.yaml")).run()
    assert len(_data(tmp_path / "out")) == 30


def test_text_multiple_choice_is_text_only_with_two_to_four_options(tmp_path):
    """`text_multiple_choice` writes no image: the scene's caption opens the first turn, every question
    whose answer has distractors lists 2-4 options and the letter names the exact answer; the records
    train as text-only samples and become image-less eval questions."""
    from fusion.processing_fusion import FusionProcessor
    from fusion.tiny import EMBEDDED_CHECKPOINT
    from fusion.train.data import FusionDataset, load_records

    cfg = {"output_dir": "t", "image_backend": "procedural", "num_scenes": 80, "seed": 5}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg | {"instruction_types": ["text_multiple_choice"]}))
    Pipeline(load_pipeline(tmp_path / "p.yaml")).run()
    out = tmp_path / "t"
    scenes = {r["id"]: Scene.from_dict(r["scene"]) for r in JsonlStore(out / "captions.jsonl")}
    data = _data(out)
    assert len(data) == 80 and not list((out / "images").glob("*.png"))
    counts = set()
    for record in data:
        assert "image" not in record and "<image>" not in json.dumps(record)
        first = record["conversations"][0]["value"]
        assert first.startswith(f"Scene: {describe(scenes[record['id']])}\n")
        for q, a in zip(record["conversations"][0::2], record["conversations"][1::2], strict=True):
            options = dict(re.findall(r"^([A-D])\. (.*)$", q["value"], re.MULTILINE))
            if not options:
                continue
            counts.add(len(options))
            assert list(options) == list("ABCD"[: len(options)]) and a["value"] in options
            question = q["value"].removeprefix(first.split("\n")[0] + "\n").split("\n")[0]
            truth = dict(exact_qa(scenes[record["id"]], record["category"], random.Random(record["id"])))
            assert options[a["value"]] == truth[question]
    assert counts == {2, 3, 4}
    questions = [json.loads(x) for x in (out / "questions.jsonl").read_text().splitlines()]
    assert questions and all("image" not in q for q in questions)
    assert {q["kind"] for q in questions} >= {"mc", "short"}
    dataset = FusionDataset(load_records(out / "data.json"), FusionProcessor.from_pretrained(EMBEDDED_CHECKPOINT), None)
    assert not any(dataset.has_image(i) for i in range(len(dataset)))
    assert "pixel_values" not in dataset[0] and len(dataset[0]["input_ids"]) > 0


def test_word_ratio_puts_words_on_scenes_whose_questions_ignore_them(tmp_path):
    """With `word_ratio`, color/count/spatial scenes also show a word (about that share of them), their
    questions still never ask for it, and the caption names it; at 0 the data is the default data."""
    base = {"image_backend": "procedural", "num_scenes": 150, "seed": 4, "canvas": [128, 128]}
    runs = {}
    for name, extra in (("default", {}), ("zero", {"word_ratio": 0.0}), ("half", {"word_ratio": 0.5})):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(base | extra | {"output_dir": name}))
        Pipeline(load_pipeline(tmp_path / f"{name}.yaml")).run()
        runs[name] = list(JsonlStore(tmp_path / name / "captions.jsonl"))
    assert runs["zero"] == runs["default"]
    others = [r for r in runs["half"] if r["category"] in ("SynthColor", "SynthCount", "SynthSpatial")]
    assert {r["id"] for r in runs["half"]}.isdisjoint(r["id"] for r in runs["default"])  # ids name the ratio
    with_word = [r for r in others if r["scene"]["text"]]
    assert len(others) == 90 and 0.3 < len(with_word) / len(others) < 0.7
    kinds = ("SynthColor", "SynthCount", "SynthSpatial")
    assert not any(r["scene"]["text"] for r in runs["default"] if r["category"] in kinds)
    words = {r["id"]: r["scene"]["text"] for r in with_word}
    for record in _data(tmp_path / "half"):
        if record["id"] in words:
            asked = " ".join(t["value"] for t in record["conversations"][0::2])
            assert "What word" not in asked and words[record["id"]] not in asked
    scene = Scene.from_dict(with_word[0]["scene"])
    assert describe(scene).endswith(f"and the word {scene.text}.")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(base | {"word_ratio": 1.5}))
    with pytest.raises(SynthConfigError, match="word_ratio"):
        load_pipeline(tmp_path / "bad.yaml")


def test_captions_use_the_article_the_next_word_needs():
    objects = [SceneObject("circle", "orange", 10, 10, 8), SceneObject("square", "red", 40, 10, 8)]
    scene = Scene(64, 64, "orange", objects)
    assert describe(scene) == "An orange background with an orange circle, a red square from left to right."
