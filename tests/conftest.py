"""Shared fixtures: the tiny models, built once per session. Helpers live in helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# vLLM's CPU build reserves its KV cache up front (GiB); its own default, a share of all memory,
# is too much on a machine shared by test runs.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from helpers import EXAMPLES  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny"
    from caitool.testing.tiny import build

    build(path)
    return path


@pytest.fixture(scope="session")
def tiny_reward_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny-rm"
    from caitool.testing.tiny import build

    build(path, seq_cls=True)
    return path


@pytest.fixture
def smoke_prompts() -> str:
    return (EXAMPLES / "smoke.jsonl").read_text()


@pytest.fixture(scope="session")
def vllm_tiny_model(tmp_path_factory) -> Path:
    """The tiny model with a head size vLLM's attention takes (its CPU build refuses 16)."""
    path = tmp_path_factory.mktemp("models") / "tiny-vllm"
    from caitool.testing.tiny import VLLM_HEAD_DIM, build

    build(path, head_dim=VLLM_HEAD_DIM)
    return path
