"""The I/O contract every command shares, in-process with the fake backend: a bad line is
one clear line after the records before it, bad flags are one line, skipping, blank lines.
(Resume after a kill, pipes and signals run for real in tests/integration/test_streaming.py.)"""

import pytest

from helpers import MINI, jsonl, records, run_cli

FAKE = ["--backend", "fake", "-m", "fake"]
GOOD = [{"id": f"g{i}", "prompt": f"Question number {i}?"} for i in range(1, 5)]

BAD_LINES = [
    ('{"id": "b", "prompt": ', "invalid JSON"),
    ('["a", "list"]', "expected a JSON object, got list"),
    ('{"id": "b"}', "missing 'prompt' (or 'messages')"),
    ('{"id": "b", "prompt": "   "}', "'prompt' is empty"),
    ('{"id": "b", "prompt": 42}', "'prompt' must be a string, not int"),
    ('{"id": "b", "messages": [{"role": "robot", "content": "x"}]}', "'messages[0].role' must be one of"),
    ('{"id": "b", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}',
     "'messages' must end with a user turn"),
]


@pytest.mark.parametrize("line, problem", BAD_LINES)
def test_bad_line_is_one_clear_line_after_earlier_records(tmp_path, line, problem):
    path = tmp_path / "in.jsonl"
    path.write_text(jsonl(GOOD[:2]) + line + "\n" + jsonl(GOOD[2:]))
    result = run_cli("generate", *FAKE, path)
    err = result.stderr.decode().strip()
    assert result.returncode == 1
    assert err == f"caitool generate: {path}:3: {problem}" or err.startswith(
        f"caitool generate: {path}:3: {problem}")
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert [r["id"] for r in records(result.stdout)] == ["g1", "g2"]


def test_critique_checks_the_response_type():
    data = jsonl(GOOD[:1]) + '{"id": "b", "prompt": "ok", "response": ["x"]}\n'
    result = run_cli("critique", *FAKE, "-c", MINI, input=data)
    assert result.returncode == 1
    assert result.stderr.decode().strip() == "caitool critique: <stdin>:2: 'response' must be a string, not list"
    assert len(records(result.stdout)) == 1


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(GOOD[:1]).encode() + b'{"prompt": "caf\xe9"}\n')
    result = run_cli("generate", *FAKE, path)
    assert result.returncode == 1
    assert f"{path}:2: invalid UTF-8" in result.stderr.decode()
    assert len(records(result.stdout)) == 1


def test_skip_invalid_reports_and_counts():
    data = jsonl(GOOD[:2]) + "not json\n\n   \n" + '{"prompt": 3}\n' + jsonl(GOOD[2:])
    result = run_cli("generate", *FAKE, "--skip-invalid", input=data)
    err = result.stderr.decode()
    assert [r["id"] for r in records(result.stdout)] == ["g1", "g2", "g3", "g4"]
    assert "<stdin>:3: invalid JSON" in err and "<stdin>:6: 'prompt' must be a string" in err
    assert "2 invalid lines skipped" in err


def test_blank_lines_and_empty_input(tmp_path):
    result = run_cli("generate", *FAKE, input="\n" + jsonl(GOOD[:1]) + "\n\n")
    assert len(records(result.stdout)) == 1
    # Empty input loads no model: this directory would not load as one.
    unloadable = tmp_path / "model"
    unloadable.mkdir()
    (unloadable / "config.json").write_text("{}")
    empty = run_cli("generate", "-m", unloadable, input="")
    assert empty.returncode == 0 and empty.stdout == b""


@pytest.mark.parametrize("args, message", [
    (["generate", "-m", "/no/such/model"], "model path '/no/such/model' does not exist"),
    (["generate", "--backend", "openai"], "no model given"),
    (["generate", "-m", "M", "--batch-size", "zero"], "Invalid value for '--batch-size'"),
    (["generate", "-m", "M", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["generate", "-m", "M", "--temperature", "-1"], "--temperature must be >= 0"),
    (["generate", "-m", "M", "--backend", "nope"], "unknown backend 'nope'"),
    (["generate", "-m", "M", "--format", "fancy"], "--format must be auto, chat or raw"),
    (["generate", "-m", "M", "--resume"], "--resume needs -o FILE"),
    (["generate", "-m", "M", "--shard", "3/2"], "--shard 3/2"),
    (["generate", "-m", "M", "missing.jsonl"], "missing.jsonl: no such file"),
    (["generate", "--no-such-flag"], "No such option"),
])
def test_bad_flags_get_one_line(tmp_path, args, message):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    args = [str(model) if a == "M" else a for a in args]
    result = run_cli(*args, input=jsonl(GOOD[:1]))
    err = result.stderr.decode().strip()
    assert result.returncode != 0
    assert message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_mini_constitution_used_by_these_tests_is_valid():
    assert "mini: ok" in run_cli("constitution", "validate", MINI).stdout.decode()


def test_output_naming_the_input_is_refused_and_the_input_kept(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(jsonl(GOOD))
    link = tmp_path / "link.jsonl"
    link.symlink_to(source)
    for output in (source, link):
        for extra in ([], ["--resume"]):
            result = run_cli("generate", *FAKE, source, "-o", output, *extra)
            assert result.returncode == 1
            assert result.stderr.decode().strip() == (
                f"caitool generate: -o {output} is the input file: writing would destroy the "
                "records still to be read; write to another file")
            assert source.read_text() == jsonl(GOOD)


def test_a_second_run_on_a_locked_output_fails_at_once_naming_the_holder(tmp_path):
    import fcntl
    import os

    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text(jsonl(GOOD))
    out.write_text(jsonl(GOOD[:1]))
    with open(out, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = run_cli("generate", *FAKE, source, "-o", out, "--resume")
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (
        f"caitool generate: {out} is being written by process {os.getpid()}; wait for it to "
        "finish or write to another file")
    assert out.read_text() == jsonl(GOOD[:1])  # untouched, not even the torn-line repair
    # Once the lock is gone the same run goes ahead.
    assert run_cli("generate", *FAKE, source, "-o", out, "--resume").returncode == 0
    assert [r["id"] for r in records(out.read_bytes())] == [r["id"] for r in GOOD]


NOISE = """
import logging, warnings
from caitool import console
console.quiet_libraries("t")
from transformers.utils import logging as hf_logging
hf_logging.get_logger("transformers.generic").warning("`past_key_values` are deprecated")
logging.getLogger("trl.trainer").warning("a notice from a logger without a handler")
warnings.warn("old name", FutureWarning)
warnings.warn("old call", DeprecationWarning)
warnings.warn("padding on the right\\nsecond line", UserWarning)
"""


@pytest.mark.parametrize("verbose", ["", "1"])
def test_library_notices_stay_off_stderr_unless_verbose(verbose):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRANSFORMERS_VERBOSITY"}
    result = subprocess.run([sys.executable, "-c", NOISE], capture_output=True, text=True,
                            env={**env, "CAITOOL_VERBOSE": verbose}, timeout=120)
    assert result.returncode == 0, result.stderr
    if verbose:
        assert "[transformers] `past_key_values`" in result.stderr and "old name" in result.stderr
    else:
        # Only what may matter, as caitool's own line.
        assert result.stderr == "caitool t: warning: padding on the right\n"


def test_an_output_is_never_an_input_or_another_output(tmp_path):
    from caitool.errors import CaitoolError
    from caitool.io.output import check_outputs

    data, link = tmp_path / "in.jsonl", tmp_path / "link.jsonl"
    data.write_text(jsonl(GOOD))
    link.symlink_to(data)
    with pytest.raises(CaitoolError, match=f"--rows {link} is the input file \\(--exclude {data}\\)"):
        check_outputs([("-o", None), ("--rows", str(link))], [("--exclude", str(data))])
    fresh = str(tmp_path / "new" / "s.json")
    with pytest.raises(CaitoolError, match="-o and --rows both write to"):
        check_outputs([("-o", fresh), ("--rows", str(tmp_path / "new" / ".." / "new" / "s.json"))])
    with pytest.raises(CaitoolError, match="the summary and --rows both write to stdout"):
        check_outputs([("the summary", "-"), ("--rows", "-")])
    check_outputs([("-o", "/dev/null"), ("--rows", "/dev/null")], [("", str(data))])
    assert data.read_text() == jsonl(GOOD)
