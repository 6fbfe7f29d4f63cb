"""Each backend declares its own options; a flag that does not apply is a one-line error."""

from __future__ import annotations

import pytest

from caitool.backends import registry
from caitool.errors import CaitoolError
from helpers import jsonl, run_cli

ROW = jsonl([{"prompt": "Hi"}])


@pytest.mark.parametrize("args, message", [
    (["--backend", "hf", "--concurrency", "4"],
     "caitool critique: --concurrency does not apply to the hf backend (its options: --device, --dtype"),
    (["--backend", "vllm", "--device", "cpu"],
     "caitool critique: --device does not apply to the vllm backend (its options: "
     "--tensor-parallel-size, --dtype)"),
    (["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--tensor-parallel-size", "2"],
     "caitool critique: --tensor-parallel-size does not apply to the openai backend"),
    (["--backend", "fake", "--device", "cpu"],
     "caitool critique: --device does not apply to the fake backend (it takes no options)"),
])
def test_a_flag_for_another_backend_is_one_line(args, message):
    result = run_cli("critique", "-m", "fake", *args, input=ROW)
    err = result.stderr.decode().strip()
    assert result.returncode == 1 and result.stdout == b""
    assert err.startswith(message) and len(err.splitlines()) == 1


def test_option_values_are_checked_by_the_backend():
    with pytest.raises(CaitoolError, match="--concurrency must be at least 1"):
        registry.create("openai", "m", base_url="http://127.0.0.1:9/v1", concurrency=0)
    with pytest.raises(CaitoolError, match="unknown --dtype 'float8'"):
        registry.create("hf", "/", dtype="float8")


def test_plugins_register_through_entry_points():
    assert {"hf", "vllm", "openai", "fake"} <= set(registry.names())
    assert registry.backend_class("fake").name == "fake"
    with pytest.raises(CaitoolError, match="unknown backend 'nope'"):
        registry.backend_class("nope")


def test_a_backends_logged_warning_is_shown_as_the_commands_own(monkeypatch):
    import logging

    from caitool.testing.fake import FakeBackend

    generate = FakeBackend.generate

    def warn_then_generate(self, prompts, params):
        logging.getLogger("caitool.backends.fake").warning("the server dropped a stop string")
        return generate(self, prompts, params)

    monkeypatch.setattr(FakeBackend, "generate", warn_then_generate)
    result = run_cli("generate", "--backend", "fake", "-m", "fake", input=ROW)
    assert result.returncode == 0
    assert "caitool generate: warning: the server dropped a stop string" in result.stderr.decode()
