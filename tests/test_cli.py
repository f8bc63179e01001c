"""`fusion chat`: the README's first command and clear errors for user mistakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import REPO


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "fusion.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=env,
        timeout=300,
        cwd=REPO,
    )


def test_one_shot_chat_on_embedded_default_streams_an_answer():
    res = _run("chat", "--image", "examples/shapes.png", "--question", "What shapes?", "--max-new-tokens", "5")
    assert res.returncode == 0, res.stderr
    assert "embedded tiny FUSION checkpoint" in res.stderr and "procedural shapes" in res.stderr
    assert res.stdout.strip(), "no answer was printed"
    assert "Traceback" not in res.stderr


def test_interactive_multi_turn_chat():
    res = _run("chat", "--image", "examples/shapes.png", "--max-new-tokens", "3", stdin="What is it?\nAnd then?\n\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("you> ") == 3 and res.stdout.count("fusion> ") == 2


def _assert_user_error(res: subprocess.CompletedProcess, needle: str) -> None:
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_unreadable_image_is_one_line_exit_2(tmp_path: Path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a png")
    _assert_user_error(_run("chat", "--image", str(bad), "--question", "hi"), "cannot read image")
    _assert_user_error(_run("chat", "--image", str(tmp_path / "missing.png"), "--question", "hi"), "cannot read image")


def test_missing_model_is_one_line_exit_2(tmp_path: Path):
    _assert_user_error(_run("chat", "--model", str(tmp_path / "nope"), "--question", "hi"), "no FUSION checkpoint")


def test_unknown_model_type_is_one_line_exit_2(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "not_a_model", "hidden_size": 8}))
    _assert_user_error(_run("chat", "--model", str(tmp_path), "--question", "hi"), "unknown model type")
