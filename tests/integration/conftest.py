"""Fixtures the integration tests share."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from helpers import free_port, served


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    """``transformers serve`` pinned to the tiny model; yields its /v1 URL."""
    pytest.importorskip("fastapi", reason="needs transformers[serving] (make install)")
    pytest.importorskip("uvicorn", reason="needs transformers[serving] (make install)")
    exe = Path(sys.executable).parent / "transformers"
    command = [str(exe)] if exe.exists() else [shutil.which("transformers") or "transformers"]
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    # One thread: the tiny model gains nothing from more, and CI's two cores are shared.
    with served("transformers serve",
                [*command, "serve", str(tiny_model), "--device", "cpu", "--host", "127.0.0.1",
                 "--port", str(port)], log, "/health", timeout=180,
                env={"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}) as url:
        yield f"{url}/v1"
