"""`fusion eval run` end to end with the tiny model on a benchmark folder drawn here: one straight
run, one killed and resumed, two shards in two processes, a torchrun launch, then scored."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import signal
import subprocess
import sys

import pytest
from PIL import Image, ImageDraw

from fusion.cli import main
from fusion.eval.files import EvalInputError
from fusion.eval.prompts import MULTIPLE_CHOICE, MULTIPLE_CHOICE_CN, SHORT_ANSWER, VIZWIZ_UNANSWERABLE, format_question
from fusion.eval.questions import expand_circular, read_questions
from fusion.eval.runner import RunSettings, parse_shard, run_eval, shard_from_env
from fusion.eval.yesno import pope_answer
from fusion.tiny import EMBEDDED_CHECKPOINT

from .conftest import REPO

N = 12
MODEL = str(EMBEDDED_CHECKPOINT)
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _draw(i: int) -> Image.Image:
    img = Image.new("RGB", (48, 40), "white")
    draw = ImageDraw.Draw(img)
    draw.ellipse((4, 4, 20 + i, 30), fill=(200, 15 * i, 30))
    draw.rectangle((30, 10, 44, 14 + i), fill=(20, 40, 9 * i))
    return img


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """12 questions (POPE-like yes/no, three multiple choice, one without image) and a straight run."""
    root = tmp_path_factory.mktemp("bench")
    (root / "images").mkdir()
    questions = []
    for i in range(N):
        _draw(i).save(root / "images" / f"{i}.png")
        q = {"question_id": i, "image": f"{i}.png", "text": f"Is there a red circle {i}?", "kind": "short"}
        q["category"] = "random" if i % 2 else "adversarial"
        if i % 4 == 3:
            q.update(kind="mc", options=["a circle", "a square", "nothing"], text="What is on the left?")
        questions.append(q)
    del questions[5]["image"]  # a text-only question in the middle of a batch
    (root / "q.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    out = root / "straight.jsonl"
    result = run_eval(MODEL, root / "q.jsonl", root / "images", out, RunSettings(batch_size=3, max_new_tokens=4))
    assert result.merged and result.answered == N
    return root


def rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def texts(path):
    return [(r["question_id"], r["text"]) for r in rows(path)]


def cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "fusion.cli", "eval", *args],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def run_args(bench, out, *extra):
    return ["run", "--model", MODEL, "--questions", str(bench / "q.jsonl"), "--images", str(bench / "images"),
            "--out", str(out), "--max-new-tokens", "4", *extra]  # fmt: skip


def test_straight_run_record(bench):
    got = rows(bench / "straight.jsonl")
    assert [r["question_id"] for r in got] == list(range(N)) and [r["row"] for r in got] == list(range(N))
    assert got[3]["prompt"] == f"What is on the left?\nA. a circle\nB. a square\nC. nothing\n{MULTIPLE_CHOICE}"
    assert got[0]["prompt"].endswith(SHORT_ANSWER) and got[0]["category"] == "adversarial"
    assert "image" not in got[5] and got[6]["image"] == "6.png"
    record = json.loads((bench / "straight.jsonl.run.json").read_text())
    assert record["query_len"] == 16 and record["completed"] is True and record["num_answers"] == N
    assert record["decoding"] == {"do_sample": False, "max_new_tokens": 4, "num_beams": 1}
    assert record["config_sha256"] and record["questions_sha256"] and record["versions"]["torch"]


def test_killed_then_resumed(bench):
    out = bench / "killed.jsonl"
    script = (
        "import os, signal, sys\n"
        "from fusion.eval.runner import RunSettings, run_eval\n"
        "def stop(written):\n"
        "    if written >= 4:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "run_eval(*sys.argv[1:5], RunSettings(batch_size=2, max_new_tokens=4), on_batch=stop)\n"
    )
    killed = subprocess.run(
        [sys.executable, "-c", script, MODEL, str(bench / "q.jsonl"), str(bench / "images"), str(out)],
        env=ENV,
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL
    assert len(rows(out)) == 4
    assert json.loads((bench / "killed.jsonl.run.json").read_text())["completed"] is False
    with open(out, "ab") as f:  # and a line torn by a kill in the middle of a write
        f.write(b'{"question_id": 4, "row": 4, "prompt": "Is th')
    # Other settings would mix two configurations in one file: refused, nothing touched.
    before = out.read_bytes()
    refused = cli(*run_args(bench, out, "--query-len", "4"))
    assert refused.returncode == 2 and "other settings (query_len: 16 then, 4 now)" in refused.stderr
    assert out.read_bytes() == before
    resumed = cli(*run_args(bench, out, "--batch-size", "5"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "answered 8, 4 already done" in resumed.stderr
    assert texts(out) == texts(bench / "straight.jsonl")


def test_two_shards_in_two_processes(bench):
    out = bench / "sharded.jsonl"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fusion.cli",
                "eval",
                *run_args(bench, out, "--shard", f"{i}/2", "--batch-size", "2"),
            ],
            cwd=REPO,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    # Whichever finished last merged (under the lock); the shard files are gone.
    assert sum("all answers in" in e for e in errors) >= 1
    assert texts(out) == texts(bench / "straight.jsonl")
    assert sorted(p.name for p in bench.glob("sharded*")) == ["sharded.jsonl", "sharded.jsonl.run.json"]


def test_torchrun_two_processes(bench):
    out = bench / "torchrun.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "fusion.cli", "eval", *run_args(bench, out, "--batch-size", "4")],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "shard 0/2" in proc.stderr and "shard 1/2" in proc.stderr  # RANK / WORLD_SIZE from torchrun
    assert texts(out) == texts(bench / "straight.jsonl")


def test_score_the_run(bench, capsys):
    ann = bench / "pope.jsonl"
    labels = {i: "yes" if i % 3 else "no" for i in range(N)}
    ann.write_text("".join(json.dumps({"question_id": k, "label": v}) + "\n" for k, v in labels.items()))
    answers = bench / "straight.jsonl"
    code = main(
        ["eval", "score", "pope", "--answers", str(answers), "--annotations", str(ann), "--out", str(bench / "r.json")]
    )
    assert code == 0
    result = json.loads((bench / "r.json").read_text())
    for split, metrics in result["metrics"]["splits"].items():  # the split is the answers' category
        mine = [r for r in rows(answers) if r["category"] == split]
        yes = sum(pope_answer(r["text"]) == "yes" for r in mine)
        assert metrics["yes_ratio"] == pytest.approx(100 * yes / len(mine)) and metrics["n"] == len(mine) == N // 2
    # The run record beside the answers names the model in the result.
    assert result["model"]["model_id"] == "tiny-fusion" and result["model"]["query_len"] == 16
    assert json.loads(capsys.readouterr().out)["headline"]["POPE"] == result["headline"]["POPE"]


def test_limit_then_the_rest(bench, tmp_path):
    out = tmp_path / "a.jsonl"
    first = run_eval(MODEL, bench / "q.jsonl", bench / "images", out, RunSettings(max_new_tokens=4, limit=5))
    assert first.merged and [r["row"] for r in rows(out)] == list(range(5))
    record = json.loads((tmp_path / "a.jsonl.run.json").read_text())
    assert record["completed"] is False and record["num_answers"] == 5
    rest = run_eval(MODEL, bench / "q.jsonl", bench / "images", out, RunSettings(max_new_tokens=4, batch_size=4))
    assert (rest.answered, rest.skipped) == (N - 5, 5)
    assert texts(out) == texts(bench / "straight.jsonl")
    # A smaller limit afterwards keeps every answer already there.
    again = run_eval(MODEL, bench / "q.jsonl", bench / "images", out, RunSettings(max_new_tokens=4, limit=2))
    assert again.answered == 0 and len(rows(out)) == N


def test_inputs_that_lose_nothing(bench, tmp_path):
    out = tmp_path / "a.jsonl"
    out.write_text(json.dumps({"question_id": 0, "row": 0, "prompt": "p", "text": "t"}) + "\n{oops}\n")
    with pytest.raises(EvalInputError, match=r"a.jsonl:2: not valid JSON"):
        run_eval(MODEL, bench / "q.jsonl", bench / "images", out, RunSettings(max_new_tokens=4))
    out.write_text(json.dumps({"question_id": 99, "row": 0, "prompt": "p", "text": "t"}) + "\n")
    with pytest.raises(EvalInputError, match="row 0 answers question 99"):
        run_eval(MODEL, bench / "q.jsonl", bench / "images", out, RunSettings(max_new_tokens=4))
    with pytest.raises(EvalInputError, match=r"image .*0\.png not found"):
        run_eval(MODEL, bench / "q.jsonl", tmp_path, tmp_path / "b.jsonl", RunSettings(max_new_tokens=4))
    assert not (tmp_path / "b.jsonl").exists()
    with pytest.raises(EvalInputError, match="no FUSION checkpoint"):
        run_eval(tmp_path, bench / "q.jsonl", bench / "images", tmp_path / "c.jsonl", RunSettings())


def test_cli_reports_bad_question_files(tmp_path, capsys):
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question_id": 1, "text": "a"}\n{"question_id": 2, "text": "b"\n')
    assert main(["eval", "run", "--model", MODEL, "--questions", str(bad), "--out", str(tmp_path / "a.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fusion: error: ") and "q.jsonl:2: not valid JSON" in err and "\n" not in err
    bad.write_text('{"question_id": 1}\n')
    assert main(["eval", "run", "--model", MODEL, "--questions", str(bad), "--out", str(tmp_path / "a.jsonl")]) == 2
    assert "record 1 needs question_id and text" in capsys.readouterr().err
    args = ["eval", "run", "--model", MODEL, "--questions", str(bad), "--out", str(tmp_path / "a.jsonl")]
    assert main([*args, "--shard", "2/2"]) == 2
    assert "--shard must be i/n" in capsys.readouterr().err


# ----- prompts, question files, shards -------------------------------------------------------------------
def test_prompt_suffixes():
    assert format_question({"text": "What color?", "options": ["red", "blue"]}) == (
        f"What color?\nA. red\nB. blue\n{MULTIPLE_CHOICE}"
    )
    assert format_question({"text": "Which?", "options": {"A": "x", "B": "y"}}, lang="cn").endswith(
        f"B. y\n{MULTIPLE_CHOICE_CN}"
    )
    assert format_question({"text": "Count?"}, default_kind="short") == f"Count?\n{SHORT_ANSWER}"
    assert format_question({"text": "What is it?", "kind": "vizwiz"}) == (
        f"What is it?\n{VIZWIZ_UNANSWERABLE}\n{SHORT_ANSWER}"
    )
    llava = f"Is it red?\n{SHORT_ANSWER}"  # LLaVA's files carry the suffix already: not added twice
    assert format_question({"text": llava, "kind": "short"}) == llava
    with_options = f"Which?\nA. x\nB. y\n{MULTIPLE_CHOICE}"
    assert format_question({"text": with_options, "options": ["x", "y"]}) == with_options
    assert format_question({"text": "Describe."}) == "Describe."
    with pytest.raises(ValueError, match="unknown question kind"):
        format_question({"text": "x", "kind": "essay"})


def test_mmbench_tsv_questions_and_circular_copies(tmp_path):
    buf = io.BytesIO()
    _draw(1).save(buf, format="PNG")
    image = base64.b64encode(buf.getvalue()).decode()
    with open(tmp_path / "mmbench.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image"])
        w.writerow([10, "Which shape?", "Look left.", "circle", "square", "", "", "A", "shapes", image])
        w.writerow([11, "Which colour?", "nan", "red", "blue", "green", "", "C", "colours", "10"])  # image of row 10
    qs = read_questions(tmp_path / "mmbench.tsv")
    assert qs[0]["text"] == "Look left.\nWhich shape?" and qs[0]["options"] == {"A": "circle", "B": "square"}
    assert qs[1]["text"] == "Which colour?" and qs[1]["image_base64"] == image and qs[1]["kind"] == "mc"
    copies = expand_circular(qs)
    assert [q["question_id"] for q in copies] == [10, 1000010, 11, 1000011, 2000011]
    assert copies[4]["options"] == {"A": "green", "B": "red", "C": "blue"} and copies[4]["circular_group"] == 11
    with pytest.raises(EvalInputError, match="already a rotated copy"):
        expand_circular(copies)
    out = tmp_path / "a.jsonl"
    result = run_eval(MODEL, tmp_path / "mmbench.tsv", None, out, RunSettings(max_new_tokens=2, circular=True))
    got = rows(out)
    assert result.merged and [r["question_id"] for r in got] == [10, 1000010, 11, 1000011, 2000011]
    assert got[4]["circular_index"] == 2 and got[4]["prompt"].startswith("Which colour?\nA. green\nB. red\nC. blue")


def test_shard_parsing(monkeypatch):
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "1", "a/b", "-1/2"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert shard_from_env() == (3, 4)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(EvalInputError, match="not within"):
        shard_from_env()
