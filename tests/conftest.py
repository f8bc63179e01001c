"""Shared test helpers: where the reference fixtures are, and tiny models built from configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def fixtures_root() -> Path:
    return Path(os.environ.get("FUSION_REFERENCE_FIXTURES", REPO.parent / "shared" / "fixtures" / "reference"))


@pytest.fixture(scope="session")
def tiny_llama():
    from fusion.tiny import build_tiny

    torch.manual_seed(0)
    return build_tiny("llama", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen2():
    from fusion.tiny import build_tiny

    return build_tiny("qwen2", seed=1)
