"""The shipped tiny FUSION (trained by ``recipes/tiny/train.sh``) really answers: held-out accuracy on
a 100-question slice, the README's first command and its Python example."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from fusion.eval.runner import RunSettings, run_eval
from fusion.eval.synthetic import is_correct, score_synth
from fusion.synth.pipeline import Pipeline, load_pipeline
from fusion.tiny import EMBEDDED_CHECKPOINT

from .conftest import REPO

# The shipped model scores 78% on this slice (76.0% on the whole held-out split; the previous model 73%);
# random weights score about 20%. The goal is 90%: raise this floor with every better model shipped.
MIN_ACCURACY = 75.0


def test_shipped_model_accuracy_on_held_out_slice(tmp_path):
    # The recipe's test split (seeds no training split uses), regenerated exactly by the pipeline.
    config = load_pipeline(REPO / "recipes" / "tiny" / "synth_test.yaml", output_dir=str(tmp_path / "test"))
    config.num_scenes = 120
    Pipeline(config).run()
    rows = [json.loads(line) for line in (tmp_path / "test" / "questions.jsonl").read_text().splitlines()][:100]
    assert len(rows) == 100 and len({r["category"] for r in rows}) == 5
    questions = tmp_path / "slice.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    answers = tmp_path / "answers.jsonl"
    run_eval(EMBEDDED_CHECKPOINT, questions, tmp_path / "test", answers, RunSettings(batch_size=25, max_new_tokens=12))
    result = score_synth([json.loads(x) for x in answers.read_text().splitlines()], questions)
    assert result["n"] == 100
    assert result["headline"]["Synth"] >= MIN_ACCURACY, result["metrics"]


def _run_offline(*args: str) -> subprocess.CompletedProcess:
    """Runs Python from the repository root as a user would, with the hub unreachable."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def test_readme_first_command_answers_correctly():
    readme = (REPO / "README.md").read_text()
    command = re.search(r"&& (fusion chat [^\n`]+)", readme).group(1)
    args = re.findall(r'"[^"]*"|\S+', command)[2:]
    args = [a.strip('"') for a in args]
    expected = re.search(r"prints `([^`]+)`", readme).group(1)
    res = _run_offline("-m", "fusion.cli", "chat", *args)
    assert res.returncode == 0, res.stderr
    assert is_correct(res.stdout.strip(), {"answer": expected}), res.stdout


def test_readme_python_example_prints_its_answer():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    expected = re.search(r"\)\)  # (\S+)\n", code).group(1)
    res = _run_offline("-c", code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == expected, res.stdout
