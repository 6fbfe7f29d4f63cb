"""Fixtures the integration tests share."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import free_port


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
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*command, "serve", str(tiny_model), "--device", "cpu", "--host", "127.0.0.1",
             "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"transformers serve exited {process.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not come up:\n{log.read_text()}")
            time.sleep(0.3)
        yield f"{url}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
