"""Reading and writing records under hostile input, in-process: what JSON parsers reject late,
what is not JSON at all, values no output may hold, output paths that cannot be written,
repeated ids. (The same kinds against every command, in real processes:
tests/integration/test_bad_input.py.)"""

import io
import sys

import pytest

from caitool.errors import CaitoolError, InputError
from caitool.io import stream, values
from caitool.io.jsonl import RecordWriter, check_writable, done_ids, parse_line, write_text
from helpers import jsonl, records, run_cli

FAKE = ["--backend", "fake", "-m", "fake"]
GOOD = [{"id": f"g{i}", "prompt": f"Question number {i}?"} for i in range(1, 5)]


def parse(text: str | bytes, lineno: int = 3):
    return parse_line(text.encode() if isinstance(text, str) else text, "in.jsonl", lineno)


@pytest.mark.parametrize("text, problem", [
    ('{"prompt": "x", "a": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested deeper than 100 levels"),
    ('{"prompt": "x", "a": ' + "[" * 150 + "]" * 150 + "}", "nested deeper than 100 levels"),
    ('{"prompt": "x", "n": ' + "9" * 5000 + "}", "an integer with more than 4300 digits"),
    ('{"prompt": "Hi \\ud800"}', "'prompt' holds a lone surrogate (\\ud800)"),
    ('{"prompt": "x", "meta": {"note": ["\\udcff"]}}', "'meta.note[0]' holds a lone surrogate"),
    ('{"prompt": "x", "\\udc80": 1}', "a key in 'the record' holds a lone surrogate"),
    ('{"prompt": "x", "p": NaN}', "NaN is not valid JSON"),
    ('{"prompt": "x", "p": Infinity}', "Infinity is not valid JSON"),
    ('{"prompt": "x", "p": -Infinity}', "-Infinity is not valid JSON"),
    ('{"prompt": "x", "p": 1e999}', "the number 1e999 is out of range"),
    (b'{"prompt": "\xed\xa0\x80"}', "invalid UTF-8"),
    (b'\xef\xbb\xbf{"prompt": "x"}', "invalid JSON"),  # a BOM is accepted on line 1 only
])
def test_late_rejections_name_the_line(text, problem):
    with pytest.raises(InputError) as caught:
        parse(text)
    assert str(caught.value).startswith(f"in.jsonl:3: {problem}"), str(caught.value)


def test_what_is_valid_stays_valid():
    assert parse(b'\xef\xbb\xbf{"prompt": "x"}\r\n', lineno=1) == {"prompt": "x"}
    assert parse('{"prompt": "\\ud83d\\ude00"}') == {"prompt": "\U0001F600"}  # a pair is fine
    deep = "[" * values.MAX_DEPTH + "]" * values.MAX_DEPTH
    assert parse('{"a": ' + deep[2:-2] + "}") is not None
    assert parse('{"n": ' + "9" * 4000 + ', "f": 1.5e308, "b": "[[[{{{"}')["f"] == 1.5e308


def test_skip_invalid_skips_the_late_rejections():
    bad = ['{"prompt": "x", "a": ' + "[" * 100_000 + "]" * 100_000 + "}",
           '{"prompt": "x", "n": ' + "9" * 5000 + "}", '{"prompt": "\\ud800"}',
           '{"prompt": "x", "p": NaN}']
    result = run_cli("generate", *FAKE, "--skip-invalid",
                     input=jsonl(GOOD[:2]) + "\n".join(bad) + "\n" + jsonl(GOOD[2:]))
    assert result.returncode == 0
    assert [r["id"] for r in records(result.stdout)] == ["g1", "g2", "g3", "g4"]
    assert "4 invalid lines skipped" in result.stderr.decode()
    for lineno in (3, 4, 5, 6):
        assert f"<stdin>:{lineno}:" in result.stderr.decode()


def _step_producing(bad_value):
    def step(batch):
        for record in batch:
            if record["id"] == "g2":
                record["p_chosen"] = bad_value
        return stream.StepResult(batch)
    return step


@pytest.mark.parametrize("bad, why", [
    (float("nan"), "'p_chosen' is nan"),
    (float("inf"), "'p_chosen' is inf"),
    ("\udcff", "'p_chosen' holds a lone surrogate"),
])
def test_a_value_no_output_may_hold_fails_its_record_only(tmp_path, capsys, bad, why):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text(jsonl(GOOD))
    with pytest.raises(CaitoolError, match=r"1 records failed .*\(g2\)"):
        stream.run("compare", str(source), _step_producing(bad), output=str(out), batch_size=4)
    assert [r["id"] for r in records(out.read_bytes())] == ["g1", "g3", "g4"]
    assert f"record g2 failed: cannot be written as JSON: {why}" in capsys.readouterr().err
    # --resume redoes only that record.
    stream.run("compare", str(source), lambda batch: stream.StepResult(batch), output=str(out),
               resume=True)
    assert [r["id"] for r in records(out.read_bytes())] == ["g1", "g3", "g4", "g2"]


def test_a_writer_without_a_failure_list_refuses_in_one_line(tmp_path):
    with RecordWriter(str(tmp_path / "out.jsonl")) as writer, pytest.raises(CaitoolError) as caught:
        writer.write([{"id": "a", "x": float("nan")}])
    assert "cannot write record 1 of the batch: 'x' is nan" in str(caught.value)
    assert (tmp_path / "out.jsonl").read_bytes() == b""


def test_output_paths_are_checked_before_any_work(tmp_path):
    afile = tmp_path / "a.jsonl"
    afile.write_text("kept\n")
    for path, message in [(tmp_path, "is a directory"), (afile / "x", "is a file, not a folder"),
                          ("/proc/x", "cannot write there")]:
        with pytest.raises(CaitoolError, match=message):
            check_writable(str(path))
    before = set(tmp_path.iterdir())
    check_writable(str(afile))
    check_writable(str(tmp_path / "new.jsonl"))
    check_writable(str(tmp_path / "sub" / "dir" / "new.jsonl"))
    assert set(tmp_path.iterdir()) == before and afile.read_text() == "kept\n"
    check_writable("/dev/null")
    # The command's own flags say so too, before the model (which does not exist) is loaded.
    result = run_cli("generate", "-m", str(tmp_path / "no-model"), "-o", str(tmp_path),
                     input=jsonl(GOOD))
    assert result.returncode == 1
    assert result.stderr.decode().strip() == f"caitool generate: -o {tmp_path}: is a directory; name a file"


def test_write_text_replaces_a_file_whole(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old\n")
    write_text(str(target), '{"new": 1}\n')
    assert target.read_text() == '{"new": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    with pytest.raises(CaitoolError, match="-o .*: cannot write there"):
        write_text(str(tmp_path), "x")


def test_done_ids_read_a_bom_and_skip_what_is_not_json(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'\xef\xbb\xbf{"id": "a"}\n{"id": NaN}\nnot json\n{"id": "b"}\n{"id": "c", "x')
    assert done_ids(str(out)) == {"a", "b"}
    assert out.read_bytes().endswith(b'{"id": "b"}\n')


def test_repeated_ids_are_skipped_and_warned_once(tmp_path):
    rows = [*GOOD, GOOD[0], {"prompt": "same"}, {"prompt": "same"}, GOOD[1]]
    result = run_cli("generate", *FAKE, input=jsonl(rows))
    err = result.stderr.decode()
    assert result.returncode == 0
    assert [r["id"] for r in records(result.stdout)][:4] == ["g1", "g2", "g3", "g4"]
    assert len(records(result.stdout)) == 5
    assert err.count("warning") == 1
    assert "3 records repeat the id of an earlier one and were skipped (the first at <stdin>:5)" in err
    assert "5 records written" in err and "3 with a repeated id skipped" in err


def test_resume_counts_each_id_once(tmp_path):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text(jsonl([*GOOD, GOOD[0], GOOD[2]]))
    out.write_text(jsonl(GOOD[:1]))
    result = run_cli("generate", *FAKE, source, "-o", out, "--resume")
    err = result.stderr.decode()
    assert "3 records written" in err and "1 already done" in err
    assert "2 with a repeated id skipped" in err
    assert [r["id"] for r in records(out.read_bytes())] == ["g1", "g2", "g3", "g4"]


@pytest.mark.parametrize("args, flag", [
    (["generate", *FAKE, "--temperature", "nan"], "--temperature"),
    (["generate", *FAKE, "--top-p", "NaN"], "--top-p"),
    (["generate", *FAKE, "--repetition-penalty", "inf"], "--repetition-penalty"),
    (["generate", *FAKE, "--temperature", "-inf"], "--temperature"),
    (["compare", *FAKE, "--tie-threshold", "nan"], "--tie-threshold"),
])
def test_float_flags_refuse_nan_and_infinity(args, flag):
    result = run_cli(*args, input=jsonl(GOOD))
    err = result.stderr.decode().strip()
    assert result.returncode == 2
    assert len(err.splitlines()) == 1 and f"Invalid value for '{flag}'" in err
    assert "is not a finite number" in err


def test_stdout_gets_strict_utf8_whatever_its_error_handler(monkeypatch):
    """Under the C locale stdout escapes surrogates into raw bytes (0xFF for \\udcff); the
    writer encodes each line itself, so such a record fails instead."""
    buffer = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buffer, encoding="utf-8",
                                                        errors="surrogateescape"))
    failed: dict[str, str] = {}
    written = RecordWriter(None).write([{"id": "a", "x": "\udcff"}, {"id": "b", "x": "é"}],
                                       unwritable=failed)
    assert written == 1 and list(failed) == ["a"]
    assert buffer.getvalue().decode("utf-8") == '{"id": "b", "x": "é"}\n'
