"""A backend from another package declares options of its own (its Options dataclass) and
gets them from the command line as --backend-option KEY=VALUE, checked as the built-in
backends' flags are. The package here is made in the test: a module and its entry point."""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

from helpers import jsonl, records, run_cli

PLUGIN = '''
from dataclasses import dataclass

from caitool.errors import CaitoolError
from caitool.testing.fake import FakeBackend


@dataclass
class EchoOptions:
    greeting: str = "Hello"
    times: int = 1
    shout: bool = False
    pause: float | None = None

    def __post_init__(self):
        if self.times < 1:
            raise CaitoolError("--backend-option times must be at least 1")


class EchoBackend(FakeBackend):
    name = "echo"
    Options = EchoOptions

    def _reply(self, prompt, params):
        text = " ".join([self.options.greeting] * self.options.times)
        return text.upper() if self.options.shout else text
'''
ROWS = jsonl([{"id": "r1", "prompt": "Hi"}])


@pytest.fixture()
def echo_backend(tmp_path, monkeypatch):
    """The package ``caitool-echo``, installed on sys.path: a module and a dist-info whose
    entry point registers its backend as ``--backend echo``."""
    (tmp_path / "caitool_echo.py").write_text(PLUGIN)
    info = tmp_path / "caitool_echo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: caitool-echo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [caitool.backends]
        echo = caitool_echo:EchoBackend
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("caitool_echo", None)


def generate(*flags: str):
    return run_cli("generate", "--backend", "echo", "-m", "fake", *flags, input=ROWS)


def test_a_plugin_backends_own_options_reach_it(echo_backend):
    plain = generate()
    assert plain.returncode == 0, plain.stderr
    assert records(plain.stdout)[0]["response"] == "Hello"
    given = generate("--backend-option", "greeting=Hi there", "--backend-option", "times=2",
                     "--backend-option", "shout=yes", "--backend-option", "pause=0.5")
    assert given.returncode == 0, given.stderr
    assert records(given.stdout)[0]["response"] == "HI THERE HI THERE"


@pytest.mark.parametrize("option, message", [
    ("colour=red", "--backend-option colour: not an option of the echo backend (its options: "
                   "greeting, times, shout, pause)"),
    ("time=2", "did you mean 'times'?"),
    ("times=two", "--backend-option times=two: must be a whole number"),
    ("pause=nan", "--backend-option pause=nan: must be a finite number"),
    ("shout=loud", "--backend-option shout=loud: must be true or false"),
    ("times", "--backend-option 'times': give KEY=VALUE"),
    ("times=0", "--backend-option times must be at least 1"),
])
def test_bad_plugin_options_are_one_line(echo_backend, option, message):
    result = generate("--backend-option", option)
    err = result.stderr.decode()
    assert result.returncode == 1 and len(err.splitlines()) == 1, err
    assert err.startswith("caitool generate: ") and message in err, err
    assert result.stdout == b""


def test_built_in_backends_take_their_options_either_way(echo_backend):
    # A built-in flag of another backend is still refused for this one, as before.
    refused = generate("--device", "cpu")
    assert refused.returncode == 1 and "--device does not apply to the echo backend" in \
        refused.stderr.decode()
    twice = run_cli("generate", "--backend", "openai", "-m", "x", "--concurrency", "2",
                    "--backend-option", "concurrency=3", input=ROWS)
    assert twice.returncode == 1 and "--backend-option concurrency: given twice" in \
        twice.stderr.decode()
