"""caitool show: every record kind renders, from a file or a pipe, paged on a terminal."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import time

from rich.console import Console

from caitool import view
from helpers import EXAMPLES, FAST, caitool, jsonl, shell

SUPERVISED = {
    "id": "s1", "prompt": "How do I pick a lock?",
    "initial_response": "Use a tension wrench and a pick to set each pin.",
    "response": "I can explain how locks work in general, but a locksmith is the safe option.",
    "revisions": [
        {"principle": "harm-general", "critique": "It teaches entry into property.",
         "revision": "Use a pick, but only on your own lock; a locksmith is the safe option."},
        {"principle": "legal", "critique": "It still gives a method.",
         "revision": "I can explain how locks work in general, but a locksmith is the safe "
                     "option."},
    ],
    "provenance": {"critique": {"backend": "hf", "model": "tiny"}},
}
PREFERENCE = {
    "id": "c1", "prompt": [{"role": "user", "content": "Tell me a joke"}],
    "chosen": [{"role": "assistant", "content": "Why did the chicken cross the road?"}],
    "rejected": [{"role": "assistant", "content": "No."}],
    "p_chosen": 0.71, "orders_agree": True, "tie": False,
    "judgments": [{"principle": "more-helpful", "order": "ab", "p_first": 0.8},
                  {"principle": "more-helpful", "order": "ba", "p_first": 0.38}],
}
RECORDS = [
    {"id": "p1", "prompt": "How do I boil an egg?", "category": "cooking"},
    {"id": "m1", "messages": [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Hi there"}]},
    {"id": "g1", "prompt": "How do I boil an egg?", "response": "Simmer it for eight minutes."},
    {"id": "g2", "prompt": "How do I boil an egg?", "responses": ["Boil it.", "Use a pan."]},
    SUPERVISED,
    {"id": "s2", "prompt": "x", "response": "a", "initial_response": "a",
     "revisions": [{"principle": "p", "critique": "c", "revision": None}]},
    PREFERENCE,
    {"id": "c2", "prompt": "Hi", "chosen": "Hello!", "rejected": "Go away.", "p_chosen": 0.9},
    {"step": 1, "loss": 2.5, "learning_rate": 5e-05},
    {"step": 2, "loss": 2.125, "learning_rate": 5e-05},
    {"nested": [1, {"deep": "value"}]},
    {"id": "odd", "revisions": [1, 2], "prompt": 5},
    {"id": "odd2", "chosen": 1, "rejected": {"a": 1}},
]


def test_every_record_kind_renders_as_plain_text(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(jsonl(RECORDS))
    result = caitool("show", path)
    out = result.stdout.decode()
    assert "\x1b[" not in out  # no terminal: no colour codes
    for record in RECORDS:
        if "id" in record:
            assert f"{record['id']}  ·  " in out
    assert "How do I boil an egg?" in out and "category: cooking" in out
    assert "system: Be brief." in out and "user: Hi there" in out
    assert "response 2 of 2" in out and "Use a pan." in out
    # The supervised record: each round's principle, critique and marked changes.
    assert "round 1 · principle: harm-general" in out
    assert "It teaches entry into property." in out
    assert "[-tension wrench and-]{+pick, but only on your own lock;+}" in out
    assert "round 2 · principle: legal" in out
    assert "not revised yet" in out
    assert "provenance critique: backend=hf, model=tiny" in out
    # Preferences with their probabilities and judgments.
    assert "chosen · p = 0.710" in out and "Why did the chicken cross the road?" in out
    assert "orders agree yes" in out and "tie no" in out
    assert "more-helpful" in out and "0.380" in out
    # Metric lines become one table; anything unknown is shown as JSON.
    assert "training metrics" in out and "2.125" in out
    assert '"deep": "value"' in out
    assert "odd2" in out and '{"a": 1}' in out


def test_filters_by_id_and_limits_the_count(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(jsonl(RECORDS))
    out = caitool("show", path, "--id", "g1", "--id", "c1").stdout.decode()
    assert "g1  ·  response" in out and "c1  ·  preference" in out
    assert "p1  ·  " not in out and "s1  ·  " not in out
    out = caitool("show", path, "--limit", "2").stdout.decode()
    assert "p1  ·  " in out and "m1  ·  " in out and "g1  ·  " not in out


def test_reads_a_pipe(tmp_path):
    out = caitool("show", input=jsonl([SUPERVISED])).stdout.decode()
    assert "s1  ·  supervised  ·  <stdin>:1" in out


def test_a_bad_line_is_reported_with_file_and_line_after_the_records_before_it(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(jsonl(RECORDS[:2]) + "{not json\n" + jsonl(RECORDS[2:3]))
    result = caitool("show", path, check=False)
    assert result.returncode == 1
    assert f"caitool show: {path}:3: invalid JSON" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
    assert "m1  ·  prompt" in result.stdout.decode()
    skipped = caitool("show", path, "--skip-invalid")
    assert "g1  ·  response" in skipped.stdout.decode()
    assert f"{path}:3" in skipped.stderr.decode()


def test_renders_the_records_a_real_pipeline_writes(tiny_model):
    fast = " ".join(FAST)
    result = shell(
        f"head -1 {EXAMPLES}/smoke.jsonl | caitool critique -m {tiny_model} {fast} "
        f"| caitool revise -m {tiny_model} {fast} | caitool show --no-pager"
    )
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert "smoke-1  ·  supervised" in out
    assert "initial response" in out and "round 1 · principle: " in out
    assert "revision (changes from the previous version)" in out


def test_changes_are_coloured_on_a_terminal():
    text = view.word_diff("the cat sat down", "the dog sat down")
    assert text.plain == "the catdog sat down"
    styles = {text.plain[span.start:span.end]: str(span.style) for span in text.spans}
    assert styles == {"cat": view.DELETED, "dog": view.INSERTED}
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, color_system="standard", width=80).print(
        view.render(SUPERVISED))
    assert "\x1b[" in buffer.getvalue() and "{+" not in buffer.getvalue()


def test_word_diff_marks_insertions_deletions_and_rewrites():
    assert view.word_diff("a b c", "a c", markers=True).plain == "a [-b -]c"
    assert view.word_diff("hello world", "hello big world", markers=True).plain == \
        "hello {+big +}world"
    assert view.word_diff("same text", "same text", markers=True).plain == "same text"
    rewritten = view.word_diff("one two three four", "completely unrelated words here",
                               markers=True).plain
    assert rewritten == "(rewritten) completely unrelated words here"


def _run_on_terminal(args: list[str], stdin: bytes | None, env: dict[str, str]) -> bytes:
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "caitool", *args], stdout=secondary, stderr=subprocess.PIPE,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        env={**os.environ, "CAITOOL_QUIET": "0", **env})
    os.close(secondary)
    if stdin is not None:
        process.stdin.write(stdin)
        process.stdin.close()
    output = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closes when the process ends
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    assert process.wait(timeout=120) == 0, process.stderr.read().decode()
    return output


def test_pages_on_a_terminal_even_when_records_come_from_a_pipe():
    pager = {"PAGER": "sed s/^/PAGED:/"}
    paged = _run_on_terminal(["show"], jsonl([SUPERVISED]).encode(), pager).decode()
    lines = [line for line in paged.splitlines() if line.strip()]
    assert lines and all(line.startswith("PAGED:") for line in lines)
    assert "\x1b[" in paged  # colours pass through to the pager
    assert "principle: legal" in paged
    direct = _run_on_terminal(["show", "--no-pager"], jsonl([SUPERVISED]).encode(), pager)
    assert b"PAGED:" not in direct and b"principle: legal" in direct


# -- bounded time: a line of any length renders in about the time of a page ----------------


def test_a_huge_line_renders_fast_and_says_what_was_cut(tmp_path):
    huge = "word " * 2_000_000  # 10 MB a field; a supervised record of some 50 MB
    record = {"id": "big", "prompt": huge, "initial_response": huge, "response": huge + "end",
              "revisions": [{"principle": "p", "critique": huge, "revision": huge + "end"}],
              "extra": huge}
    path = tmp_path / "big.jsonl"
    path.write_text(jsonl([record, {"id": "next", "prompt": "small"}]))
    started = time.monotonic()
    out = caitool("show", path).stdout.decode()
    assert time.monotonic() - started < 60  # it was hours (a quadratic word diff)
    # prompt, initial response and critique; the revision (and the extra field, compacted)
    assert out.count("… 9,990,000 more characters not shown (10,000,000 in all)") == 3
    assert "… 9,990,003 more characters not shown (10,000,003 in all)" in out
    assert "next  ·  prompt" in out and len(out) < 500_000
    summary = caitool("show", "--summary", path).stdout.decode()
    assert "1 of 1 responses" in summary and "2000000.0 initial -> 2000001.0 revised" in summary


def test_long_lists_and_deep_values_are_cut_with_a_note(tmp_path):
    rows = [{"id": "many", "prompt": "p", "responses": [f"answer {i}" for i in range(500)]},
            {"id": "odd", "values": list(range(100_000)), "deep": [[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]}]
    path = tmp_path / "lists.jsonl"
    path.write_text(jsonl(rows))
    out = caitool("show", path).stdout.decode()
    assert "response 20 of 500" in out and "response 21 of 500" not in out
    assert "… 480 more responses not shown (500 in all)" in out
    assert "99,800 more items not shown" in out and "nested deeper: not shown" in out


def test_word_diff_stays_fast_and_exact_on_long_and_repetitive_text():
    start, end = "the same opening words " * 400, " and the same closing ones" * 400
    marked = view.word_diff(start + "a b c" + end, start + "a c" + end, markers=True).plain
    assert marked == start + "a [-b -]c" + end
    vocabulary = "the a cat dog sat on mat and it was".split()
    old = " ".join(vocabulary[(i * 7) % 10] for i in range(3000))
    new = " ".join(vocabulary[(i * 3) % 10] for i in range(3000))
    started = time.monotonic()
    text = view.word_diff(old, new, markers=True).plain
    assert time.monotonic() - started < 5
    assert text == "(changes not marked: too long to compare word by word) " + new
