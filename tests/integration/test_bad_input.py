"""A corpus of hostile input, faults and misuse, run against every command that reads records,
each case in a real process with a time limit. Every case must end cleanly: the exit status it
should have, one line on stderr (``file:line`` where a line is at fault), no traceback, the
records before a bad line kept, nothing written that the next command could not read, and no
input file changed.

The table is data: ``cases()`` lists them and ``outcome()`` judges one run, so a script can run
the same corpus against another source tree and count what it finds (``judge``'s categories:
clean, traceback, hang, lost, wrong). Case ids carry the issue row they test (``row5-...``);
``OTHERS`` lists the cases whose fixes live outside the I/O layer.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import DATA, MINI

FAKE = ["--backend", "fake", "-m", "fake"]
BOM = b"\xef\xbb\xbf"
TIMEOUT = 60.0

# Cases whose rows are fixed outside the I/O layer (constitutions, models, training, show).
OTHERS = {
    "constitution-row10-anthropic-corrupt-file", "constitution-row10-anthropic-wrong-type",
    "constitution-row10-hf-recipe-wrong-type", "constitution-row10-yaml-alias-bomb",
    "generate-row11-corrupt-model-dir", "generate-row11-pickle-only-model",
    "train-sft-row12-output-in-proc", "train-sft-row7-metrics-in-proc",
    "show-row13-8mb-line",
}


def good(command: str, i: int) -> dict:
    """A valid input record for ``command``."""
    record: dict = {"id": f"g{i}", "prompt": f"Question number {i}?"}
    if command in ("critique", "eval", "train-sft"):
        record["response"] = f"Answer {i}."
    elif command == "revise":
        record |= {"initial_response": "A.", "response": "A.",
                   "revisions": [{"principle": "unkind", "critique": "C.", "revision": None}]}
    elif command == "prefs":
        record |= {"initial_response": "A.", "response": "B.",
                   "revisions": [{"principle": "unkind", "critique": "C.", "revision": "B."}]}
    elif command == "compare":
        record["responses"] = [f"First {i}.", f"Second {i}."]
    elif command == "eval-mc":
        record |= {"prompt": f"Question {i}?\n\nThe answer is:", "corrects": [" (A)"],
                   "incorrects": [" (B)"]}
    elif command == "train-rm":
        record |= {"chosen": "Kind.", "rejected": "Unkind."}
    return record


READERS = {
    "generate": ["generate", *FAKE, "{in}"],
    "critique": ["critique", *FAKE, "-c", MINI, "{in}"],
    "revise": ["revise", *FAKE, "-c", MINI, "{in}"],
    "compare": ["compare", *FAKE, "-c", MINI, "{in}"],
    "prefs": ["prefs", "{in}"],
    "show": ["show", "--no-pager", "{in}"],
    "eval": ["eval", *FAKE, "--harmless-constitution", MINI, "--helpful-constitution", MINI,
             "--bootstrap", "0", "{in}", "{other}"],
    "eval-mc": ["eval-mc", *FAKE, "--bootstrap", "0", "{in}"],
    "train-sft": ["train-sft", "{in}", "-m", "{tiny}", "-o", "{dir}/sft"],
    "train-rm": ["train-rm", "{in}", "-m", "{tiny}", "-o", "{dir}/rm"],
    "import": ["import", "jsonl", "{in}"],
    # Seeds are read whole before the first request: a bad line leaves nothing written.
    "red-team": ["red-team", *FAKE, "-n", "1", "{in}"],
}
STREAMING = ("generate", "critique", "revise", "compare", "prefs", "import")
SUMMARIES = ("eval", "eval-mc")


def line(record: dict) -> bytes:
    return json.dumps(record).encode() + b"\n"


def _member(record: dict, raw: str) -> bytes:
    """``record`` with one more member written as raw JSON text."""
    return (json.dumps(record)[:-1] + ", " + raw + "}").encode()


# A bad line, made from a good record: (issue row, maker).
BAD_LINES: dict[str, tuple[str, Callable[[dict], bytes]]] = {
    "invalid-json": ("old", lambda r: b'{"id": "b", "prompt": '),
    "not-an-object": ("old", lambda r: b'["a", "list"]'),
    "invalid-utf8": ("old", lambda r: json.dumps(r).encode().replace(b"Question", b"Qu\xe9stion")),
    "raw-nul-byte": ("old", lambda r: json.dumps(r).encode().replace(b"Question", b"Qu\x00estion")),
    "missing-field": ("old", lambda r: json.dumps({"id": r["id"]}).encode()),
    "wrong-type": ("old", lambda r: json.dumps({**r, "prompt": 42}).encode()),
    "deep-nesting": ("row5", lambda r: _member(r, '"x": ' + "[" * 100_000 + "]" * 100_000)),
    "huge-integer": ("row5", lambda r: _member(r, '"n": ' + "7" * 5000)),
    "lone-surrogate-prompt": ("row5", lambda r: json.dumps({**r, "prompt": "Hi \ud800"}).encode()),
    "lone-surrogate-passthrough": ("row5", lambda r: json.dumps({**r, "note": "\udcff"}).encode()),
    "nan": ("row6", lambda r: _member(r, '"score": NaN')),
    "infinity": ("row6", lambda r: _member(r, '"score": -Infinity')),
    "overflowing-float": ("row6", lambda r: _member(r, '"score": 1e999')),
}
SCHEMA_FREE = {"show"}  # reads any object: schema kinds are not errors there


def _lines(command: str, n: int = 4) -> list[bytes]:
    return [line(good(command, i)) for i in range(1, n + 1)]


# Valid input in an unusual shape: (issue row, maker of the whole file from good lines).
ODD_FILES: dict[str, tuple[str, Callable[[list[bytes]], bytes]]] = {
    "bom": ("row15", lambda lines: BOM + b"".join(lines)),
    "crlf": ("old", lambda lines: b"".join(x.replace(b"\n", b"\r\n") for x in lines)),
    "blank-lines": ("old", lambda lines: b"\n   \n".join(lines) + b"\n\n"),
    "no-final-newline": ("old", lambda lines: b"".join(lines).rstrip(b"\n")),
}


@dataclass
class Case:
    id: str
    args: list[str]
    files: dict[str, bytes] = field(default_factory=dict)
    code: int | None = 1            # the exit status; None: any but 0
    where: str | None = None        # text stderr must hold (file:line, a flag, a path)
    lines: int | None = 1           # lines on stderr (None: not checked)
    kept: list[str] | None = None   # ids the output must hold, in order
    output: str = "stdout"          # where: stdout, or a file name in the case's folder
    redirect: str = ""              # a shell redirection closing a standard stream
    stdin: bytes | None = None
    fsize: int | None = None        # a file size limit (a full disk, as the process sees it)
    terminate_after: int | None = None  # send SIGTERM once the output has this many lines
    timeout: float = TIMEOUT
    quiet: bool = True
    needs: str = ""                 # "tiny": the tiny model
    extra: Callable[[str, str], str | None] | None = None  # (stdout, stderr) -> a problem


def line_cases() -> list[Case]:
    out = []
    for command, argv in READERS.items():
        for kind, (row, make) in BAD_LINES.items():
            if command in SCHEMA_FREE and kind in ("missing-field", "wrong-type"):
                continue
            goods = _lines(command)
            data = b"".join(goods[:2]) + make(good(command, 9)) + b"\n" + b"".join(goods[2:])
            files = {"in.jsonl": data, "other.jsonl": b"".join(_lines("eval"))}
            kept = ["g1", "g2"] if command in STREAMING else None
            out.append(Case(f"{command}-{row}-{kind}", argv, files, where="in.jsonl:3:",
                            kept=kept, needs="tiny" if command.startswith("train") else "",
                            extra=_shown_before if command == "show" else None))
    return out


def _shown_before(stdout: str, stderr: str) -> str | None:
    return None if "g1" in stdout and "g2" in stdout else "the records before were not shown"


def odd_file_cases() -> list[Case]:
    out = []
    for command, argv in READERS.items():
        if command.startswith("train"):
            continue  # accepted input would start training
        for kind, (row, make) in ODD_FILES.items():
            files = {"in.jsonl": make(_lines(command)), "other.jsonl": b"".join(_lines("eval"))}
            out.append(Case(f"{command}-{row}-{kind}", argv, files, code=0, lines=0,
                            kept=["g1", "g2", "g3", "g4"] if command in STREAMING else None,
                            extra=_summary_or_shown(command)))
        # An import that finds no rows is a mistake to name, never a silent empty output.
        empty = (command in STREAMING or command == "show") and command != "import"
        out.append(Case(f"{command}-old-empty-input", argv, {"in.jsonl": b"", "other.jsonl":
                        b"".join(_lines("eval"))}, code=0 if empty else 1, lines=0 if empty else 1,
                        kept=[] if command in STREAMING else None))
    return out


def _summary_or_shown(command: str):
    def check(stdout: str, stderr: str) -> str | None:
        if command in SUMMARIES:
            try:
                json.loads(stdout)
            except ValueError:
                return "no JSON summary on stdout"
        if command == "show" and "g4" not in stdout:
            return "not every record was shown"
        return None
    return check


def stream_cases() -> list[Case]:
    out = []
    many = b"".join(line(good("generate", i)) for i in range(1, 21))
    for command in STREAMING:
        argv, goods = READERS[command], b"".join(_lines(command))
        files = {"in.jsonl": goods}
        out += [
            Case(f"{command}-row7-output-dev-full", [*argv, "-o", "/dev/full"], files, where="/dev/full"),
            Case(f"{command}-row7-output-is-a-dir", [*argv, "-o", "{dir}"], files, where="-o"),
            Case(f"{command}-row7-output-under-a-file", [*argv, "-o", "{in}/x"], files, where="-o"),
            Case(f"{command}-row7-output-in-proc", [*argv, "-o", "/proc/x"], files, where="/proc/x"),
            Case(f"{command}-row1-output-is-the-input", [*argv, "-o", "{in}"], files, where="-o"),
            Case(f"{command}-row8-stdout-closed", argv, files, redirect=">&-", where="stdout"),
            Case(f"{command}-row8-stdin-closed", [a if a != "{in}" else "-" for a in argv], files,
                 redirect="<&-", where="stdin"),
            Case(f"{command}-row8-stderr-closed", argv, files, redirect="2>&-", code=0, lines=0,
                 kept=["g1", "g2", "g3", "g4"]),
            Case(f"{command}-row8-stdout-closed-with-output-file", [*argv, "-o", "{dir}/out.jsonl"],
                 files, redirect=">&-", code=0, lines=0, output="out.jsonl",
                 kept=["g1", "g2", "g3", "g4"]),
        ]
    generate = READERS["generate"]
    out += [
        Case("generate-row7-output-checked-before-the-model",
             ["generate", "-m", "{dir}/no-such-model", "-o", "{dir}", "{in}"],
             {"in.jsonl": many}, where="-o"),
        Case("generate-row7-full-disk", [*generate, "--batch-size", "1", "-o", "{dir}/out.jsonl"],
             {"in.jsonl": many}, fsize=1000, where="out.jsonl", output="out.jsonl", kept=["g1"]),
        Case("generate-row16-duplicate-ids", generate,
             {"in.jsonl": many[:many.index(b"\n") + 1] + many}, code=0, where="1 record repeats",
             kept=[f"g{i}" for i in range(1, 21)]),
        Case("generate-row16-duplicate-ids-resumed",
             [*generate, "--resume", "-o", "{dir}/out.jsonl"],
             {"in.jsonl": many + many[:many.index(b"\n") + 1],
              "out.jsonl": many[:many.index(b"\n") + 1]},
             code=0, lines=2, quiet=False, output="out.jsonl", kept=[f"g{i}" for i in range(1, 21)],
             extra=_counts("19 records written", "1 already done", "1 with a repeated id")),
    ]
    big = b"".join(line(good("generate", i)) for i in range(1, 50_001))
    for command in ("generate", "prefs"):
        argv = READERS[command]
        data = big if command == "generate" else b"".join(
            line(good("prefs", i)) for i in range(1, 50_001))
        out.append(Case(f"{command}-row14-sigterm", [*argv, "--batch-size", "1", "-o",
                                                    "{dir}/out.jsonl"], {"in.jsonl": data},
                        code=143, where="terminated", output="out.jsonl", kept=["g1"],
                        terminate_after=50))
    for command in ("show", "eval"):
        argv = READERS[command]
        files = {"in.jsonl": b"".join(_lines("eval")), "other.jsonl": b"".join(_lines("eval"))}
        out += [
            Case(f"{command}-row8-stdout-closed", argv, files, redirect=">&-", where="stdout"),
            Case(f"{command}-row8-stdin-closed", [a if a != "{in}" else "-" for a in argv], files,
                 redirect="<&-", where="stdin"),
            Case(f"{command}-row8-stderr-closed", argv, files, redirect="2>&-", code=0, lines=0,
                 extra=_summary_or_shown("eval") if command == "eval" else None),
        ]
    evaluate = READERS["eval"]
    files = {"in.jsonl": b"".join(_lines("eval")), "other.jsonl": b"".join(_lines("eval"))}
    out += [
        Case("eval-row7-judgments-in-proc", [*evaluate, "--judgments", "/proc/x"], files,
             where="/proc/x"),
        Case("eval-row7-judgments-is-a-dir", [*evaluate, "--judgments", "{dir}"], files,
             where="--judgments"),
        Case("eval-row7-output-is-a-dir", [*evaluate, "-o", "{dir}"], files, where="-o"),
        Case("eval-row7-output-dev-full", [*evaluate, "-o", "/dev/full"], files, where="/dev/full"),
        Case("eval-row7-judgments-checked-before-the-model",
             ["eval", "-m", "{dir}/no-such-model", "--judgments", "/proc/x", "{in}", "{other}"],
             files, where="/proc/x"),
    ]
    return out


def _counts(*wanted: str):
    def check(stdout: str, stderr: str) -> str | None:
        missing = [w for w in wanted if w not in stderr]
        return f"the summary lacks {missing}" if missing else None
    return check


def flag_cases() -> list[Case]:
    goods = {"in.jsonl": b"".join(_lines("generate"))}
    pairs = {"in.jsonl": b"".join(_lines("compare"))}
    prefs = {"in.jsonl": b"".join(_lines("train-rm"))}
    return [
        Case("generate-row17-temperature-nan", [*READERS["generate"], "--temperature", "nan"], goods,
             code=None, where="--temperature"),
        Case("generate-row17-top-p-nan", [*READERS["generate"], "--top-p", "nan"], goods,
             code=None, where="--top-p"),
        Case("generate-row17-repetition-penalty-inf",
             [*READERS["generate"], "--repetition-penalty", "inf"], goods, code=None,
             where="--repetition-penalty"),
        Case("compare-row17-tie-threshold-nan", [*READERS["compare"], "--tie-threshold", "nan"],
             pairs, code=None, where="--tie-threshold"),
        Case("compare-row17-temperature-inf", [*READERS["compare"], "--temperature", "inf"],
             pairs, code=None, where="--temperature"),
        Case("train-rm-row17-margin-nan", [*READERS["train-rm"], "--margin", "nan"], prefs,
             code=None, where="--margin", needs="tiny"),
    ]


# "Billion laughs": nine aliases, each a list of nine of the one before: 9**9 strings.
BILLION_LAUGHS = "\n".join(
    ["a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    + ["name: bomb", "critique_revision: *a9"]).encode()


def other_cases() -> list[Case]:
    """Rows fixed outside the I/O layer (see OTHERS)."""
    anthropic = {f"anth/{p.name}": p.read_bytes() for p in (DATA / "anthropic").iterdir()}
    recipe = json.loads((DATA / "hf_recipe.json").read_text())
    recipe["constitutions"][0]["critic"] = 42
    goods = {"in.jsonl": b"".join(_lines("generate"))}
    sft = {"in.jsonl": b"".join(_lines("train-sft"))}
    return [
        Case("constitution-row10-anthropic-corrupt-file", ["constitution", "validate", "{dir}/anth"],
             {**anthropic, "anth/RLMadisonInstructions.json": b'["Which reply is'},
             where="RLMadisonInstructions.json"),
        Case("constitution-row10-anthropic-wrong-type", ["constitution", "validate", "{dir}/anth"],
             {**anthropic, "anth/RLMadisonInstructions.json": b"[42, {}]"},
             where="RLMadisonInstructions.json"),
        Case("constitution-row10-hf-recipe-wrong-type", ["constitution", "validate", "{dir}/r.json"],
             {"r.json": json.dumps(recipe).encode()}, where="r.json"),
        Case("constitution-row10-yaml-alias-bomb", ["constitution", "validate", "{dir}/bomb.yaml"],
             {"bomb.yaml": BILLION_LAUGHS}, where="bomb.yaml", timeout=20),
        Case("generate-row11-corrupt-model-dir", ["generate", "-m", "{dir}/model", "{in}"],
             {**goods, "model/config.json": b'{"model_type": "llama", '}, where="model"),
        Case("generate-row11-pickle-only-model", ["generate", "-m", "{dir}/model", "{in}"],
             {**goods, "model/pytorch_model.bin": b"\x80\x02}q\x00."}, where="model", needs="tiny"),
        Case("train-sft-row12-output-in-proc", ["train-sft", "{in}", "-m", "{tiny}", "-o", "/proc/x"],
             sft, where="/proc/x", needs="tiny",
             extra=lambda out, err: "blames the model" if "cannot load the model" in err else None),
        Case("train-sft-row7-metrics-in-proc",
             ["train-sft", "{in}", "-m", "{tiny}", "-o", "{dir}/sft", "--metrics", "/proc/x"],
             sft, where="/proc/x", needs="tiny", timeout=30),
        Case("show-row13-8mb-line", ["show", "--no-pager", "{in}"],
             {"in.jsonl": line({"id": "long", "prompt": "Hello world.\n" * 650_000})}, code=0, lines=0,
             timeout=30),
    ]


def _hh(i: int, human: bool = True) -> dict:
    """An hh-rlhf row with its own id (which the import keeps)."""
    ask = "\n\nHuman: How do I keep basil alive?" if human else "Just some notes on basil."
    return {"id": f"g{i}", "chosen": f"{ask}\n\nAssistant: Water it often ({i}).",
            "rejected": f"{ask}\n\nAssistant: Never water it ({i})."}


def _red_team(i: int, rating: object = 1.0) -> dict:
    return {"id": f"g{i}", "transcript": f"\n\nHuman: How do I break a lock ({i})?\n\nAssistant: "
            "I won't help with that.", "rating": rating, "task_description": "a lock"}


def import_cases() -> list[Case]:
    """`caitool import`'s own shapes (the generic jsonl reader runs in the tables above).
    Ids carry 'data', the issue that brought the command."""
    hh = b"".join(line(_hh(i)) for i in (1, 2))
    red = json.dumps([_red_team(1), _red_team(2, "high"), _red_team(3)], indent=2).encode()
    huge = {"id": "long", "chosen": "\n\nHuman: Tell me about basil.\n\nAssistant: "
            + "Basil likes sun and water. " * 800_000, "rejected": "\n\nHuman: Tell me about "
            "basil.\n\nAssistant: No."}
    return [
        Case("import-data-wrong-format", ["import", "hh-rlfh", "{in}"], {"in.jsonl": hh},
             where="red-team-attempts"),
        Case("import-data-wrong-shape", ["import", "hh-rlhf", "{in}"],
             {"in.jsonl": b"".join(line(good("compare", i)) for i in (1, 2))},
             where="in.jsonl:1: not an hh-rlhf row", kept=[]),
        Case("import-data-no-human-turn", ["import", "hh-rlhf", "{in}"],
             {"in.jsonl": hh + line(_hh(3, human=False)) + line(_hh(4))},
             where="in.jsonl:3:", kept=["g1", "g2"]),
        Case("import-data-rating-not-a-number", ["import", "red-team-attempts", "{in}"],
             {"in.jsonl": red}, where="row 2: 'rating'", kept=["g1"]),
        Case("import-data-dev-zero", ["import", "text", "/dev/zero"], where="/dev/zero"),
        Case("import-data-fifo", ["import", "text", "{dir}/pipe.fifo"], {"pipe.fifo": b""},
             where="pipe.fifo"),
        Case("import-data-endless-line", ["import", "text", "{dir}/zeros.gz"],
             {"zeros.gz": gzip.compress(b"\0" * 40 * 2**20)}, where="zeros.gz:1:", timeout=30),
        Case("import-data-huge-transcript", ["import", "hh-rlhf", "--as", "prefs", "{in}"],
             {"in.jsonl": line(huge)}, code=0, lines=0, kept=["long"], timeout=30),
    ]


def red_team_cases() -> list[Case]:
    """`caitool red-team`'s own inputs beside its seeds (those run in the tables above)."""
    seeds = b"".join(_lines("generate"))
    argv = ["red-team", *FAKE, "{in}"]
    return [
        Case("red-team-data-request-dev-zero", [*argv, "--request", "/dev/zero"], {"in.jsonl": seeds},
             where="/dev/zero: not a regular file"),
        Case("red-team-data-request-fifo", [*argv, "--request", "{dir}/ask.fifo"],
             {"in.jsonl": seeds, "ask.fifo": b""}, where="ask.fifo: not a regular file"),
        Case("red-team-data-request-not-yaml", [*argv, "--request", "{dir}/ask.yaml"],
             {"in.jsonl": seeds, "ask.yaml": b"description: [never closed\n"},
             where="ask.yaml: cannot parse"),
        Case("red-team-data-request-huge", [*argv, "--request", "{dir}/ask.yaml"],
             {"in.jsonl": seeds, "ask.yaml": b"description: " + b"x" * 200_000 + b"\n"},
             where="ask.yaml: larger than"),
        Case("red-team-data-output-is-the-seeds", [*argv, "-o", "{in}"], {"in.jsonl": seeds},
             where="is the input file"),
        Case("red-team-data-output-is-held-out", [*argv, "--exclude", "{dir}/held.jsonl",
                                                  "-o", "{dir}/held.jsonl"],
             {"in.jsonl": seeds, "held.jsonl": seeds}, where="is the input file"),
        Case("red-team-data-bad-held-out-line", [*argv, "--exclude", "{dir}/held.jsonl"],
             {"in.jsonl": seeds, "held.jsonl": seeds + b'{"id": "h", "prompt": 3}\n'},
             where="held.jsonl:5:", kept=[]),
        # A huge -n ends when the requests do, with a word on why it has fewer.
        Case("red-team-data-huge-n", [*argv, "-n", "1000000000", "--max-requests", "3"],
             {"in.jsonl": seeds}, code=0, where="stopped after 3 requests"),
        Case("red-team-data-threshold-out-of-range", [*argv, "--near-duplicates", "2"],
             {"in.jsonl": seeds}, where="--near-duplicates"),
    ]


def _rated(i: int, rating: object = 1.0) -> dict:
    return {"id": f"g{i}", "prompt": f"Question number {i}?", "response": f"Answer {i}.",
            "rating": rating}


def score_cases() -> list[Case]:
    """`train-rm --target` and `eval --score-model`: the score model's inputs."""
    argv = [*READERS["train-rm"], "--target", "rating"]
    rated = [line(_rated(i)) for i in (1, 2)]

    def third(record: dict) -> dict[str, bytes]:
        return {"in.jsonl": b"".join(rated) + line(record) + line(_rated(4))}

    missing = _rated(3)
    del missing["rating"]
    turns_all = {"id": "g3", "messages": [{"role": "user", "content": "How do I break a lock?"}],
                 "rating": 2.0}
    return [
        Case("train-rm-data-target-missing", argv, third(missing),
             where="in.jsonl:3: missing 'rating' (the --target field)", needs="tiny"),
        Case("train-rm-data-target-not-a-number", argv, third(_rated(3, "high")),
             where="in.jsonl:3: 'rating' is \"high\", not a number", needs="tiny"),
        Case("train-rm-data-target-boolean", argv, third(_rated(3, True)),
             where="in.jsonl:3: 'rating' is true, not a number", needs="tiny"),
        Case("train-rm-data-target-other-field", [*READERS["train-rm"], "--target", "score"],
             {"in.jsonl": b"".join(rated)}, where="in.jsonl:1: missing 'score'", needs="tiny"),
        # What `caitool import red-team-attempts --turns all` writes: no rated reply in it.
        Case("train-rm-data-target-no-reply", argv, third(turns_all),
             where="in.jsonl:3: no reply to score", needs="tiny"),
        Case("train-rm-data-target-constant", argv, {"in.jsonl": b"".join(rated)},
             where="nothing to learn", needs="tiny"),
        Case("eval-data-score-model-missing", ["eval", "--score-model", "{dir}/no-model",
                                               "--only", "score", "{in}"],
             {"in.jsonl": b"".join(_lines("eval"))}, where="no-model"),
    ]


def cases() -> list[Case]:
    return (line_cases() + odd_file_cases() + stream_cases() + flag_cases() + other_cases()
            + import_cases() + red_team_cases() + score_cases() + direct_cases())


def direct_cases() -> list[Case]:
    """`revise --direct` (the paper's revisions without a critique): rounds it cannot take."""
    pending = {"id": "d1", "prompt": "Q?", "initial_response": "A.", "response": "A.",
               "revisions": [{"principle": "unkind", "critique": "C.", "revision": None}]}
    bad_direct = {"id": "d2", "prompt": "Q?", "initial_response": "A.", "response": "B.",
                  "revisions": [{"principle": "unkind", "critique": "C.", "revision": "B.",
                                 "direct": True}]}
    unmarked = {"id": "d3", "prompt": "Q?", "initial_response": "A.", "response": "B.",
                "revisions": [{"principle": "unkind", "critique": None, "revision": "B."}]}
    argv = ["revise", "--direct", *FAKE, "-c", MINI, "{in}"]
    goods = b"".join(_lines("generate", 2))
    return [
        Case("revise-direct-pending-critique", argv, {"in.jsonl": goods + line(pending)},
             where="in.jsonl:3: the last round's critique has no revision yet", kept=["g1", "g2"]),
        Case("revise-direct-direct-round-with-critique", argv, {"in.jsonl": goods + line(bad_direct)},
             where="in.jsonl:3:", kept=["g1", "g2"]),
        Case("prefs-direct-round-without-mark", ["prefs", "{in}"], {"in.jsonl": line(unmarked)},
             where="in.jsonl:1:", kept=[]),
    ]


# -- running and judging ---------------------------------------------------------------------


@dataclass
class Run:
    code: int | None        # None: it did not end in time
    stdout: bytes
    stderr: bytes
    seconds: float
    output: bytes | None    # the output file's bytes, when the case writes one
    inputs_changed: list[str]


def prepare(case: Case, folder: Path, tiny: Path | None) -> list[str]:
    for name, data in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".fifo"):
            os.mkfifo(path)  # a reader that opened it would wait for a writer for ever
            continue
        path.write_bytes(data)
    if case.id.endswith("pickle-only-model") and tiny:
        for item in tiny.iterdir():
            if not item.name.endswith(".safetensors"):
                shutil.copy(item, folder / "model" / item.name)
    names = {"in": str(folder / "in.jsonl"), "other": str(folder / "other.jsonl"),
             "dir": str(folder), "tiny": str(tiny or folder / "no-tiny-model")}
    args = []
    for arg in case.args:
        for key, value in names.items():
            arg = arg.replace("{" + key + "}", value)
        args.append(arg)
    return args


def run(case: Case, folder: Path, python: str, tiny: Path | None = None,
        env: dict[str, str] | None = None) -> Run:
    """Run one case in ``folder`` with ``python -m caitool``."""
    args = prepare(case, folder, tiny)
    command = [python, "-m", "caitool", *args]
    if case.redirect:
        command = ["bash", "-c", f'exec "$@" {case.redirect}', "caitool", *command]
    full_env = {**os.environ, "CAITOOL_QUIET": "1" if case.quiet else "0",
                "HF_HUB_OFFLINE": "1", **(env or {})}

    def limits() -> None:
        if case.fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (case.fsize, case.fsize))

    before = {name: (folder / name).read_bytes() for name in case.files
              if name.endswith(".jsonl") and name != "out.jsonl"}
    started = time.monotonic()
    stdin = subprocess.DEVNULL if case.stdin is None else subprocess.PIPE
    process = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=full_env, cwd=folder,
                               preexec_fn=limits)
    if case.terminate_after is not None:
        _terminate_when(process, folder / case.output, case.terminate_after, case.timeout)
    try:
        stdout, stderr = process.communicate(case.stdin, timeout=case.timeout)
        code = process.returncode
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        code = None
    seconds = time.monotonic() - started
    output = None
    if case.output != "stdout":
        path = folder / case.output
        output = path.read_bytes() if path.is_file() else b""
    changed = [name for name, data in before.items() if (folder / name).read_bytes() != data]
    return Run(code, stdout, stderr, seconds, output, changed)


def _terminate_when(process: subprocess.Popen, path: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            break
        time.sleep(0.05)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)


def _whole_records(data: bytes) -> tuple[list[dict], str | None]:
    """The records of an output, or what makes it unreadable for the next command."""
    if data and not data.endswith(b"\n"):
        return [], "a torn last line"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [], "invalid UTF-8 in the output"
    records = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            records.append(json.loads(raw, parse_constant=_refuse))
        except ValueError as exc:
            return [], f"output line {number} is not JSON ({exc})"
    return records, None


def _refuse(name: str):
    raise ValueError(f"{name} in the output")


def outcome(case: Case, result: Run) -> tuple[str, list[str]]:
    """The category (clean, hang, traceback, lost, wrong) and what is wrong."""
    err = result.stderr.decode("utf-8", "replace")
    if result.code is None:
        return "hang", [f"no end within {case.timeout:.0f}s"]
    if "Traceback" in err:
        return "traceback", [err.strip().splitlines()[-1] if err.strip() else "traceback"]
    lost: list[str] = [f"changed the input {name}" for name in result.inputs_changed]
    if case.kept is not None:
        data = result.stdout if case.output == "stdout" else (result.output or b"")
        records, problem = _whole_records(data)
        ids = [str(r.get("id")) for r in records]
        if problem:
            lost.append(problem)
        elif case.code == 0 and result.code == 0 and ids != case.kept:
            lost.append(f"wrote {ids[:6]}, not {case.kept[:6]}")
        elif case.code != 0 and ids[:len(case.kept)] != case.kept:
            lost.append(f"kept {ids[:6]}, not {case.kept}")
    if lost:
        return "lost", lost
    wrong = []
    ok_code = result.code != 0 if case.code is None else result.code == case.code
    if not ok_code:
        wrong.append(f"exit status {result.code}, not {case.code if case.code is not None else 'non-zero'}")
    said = [x for x in err.splitlines() if x.strip()]
    if case.lines is not None and len(said) != case.lines:
        wrong.append(f"{len(said)} lines on stderr, not {case.lines}: {said[:3]}")
    if case.where and case.where not in err:
        wrong.append(f"stderr does not say {case.where!r}: {err.strip()[:200]!r}")
    if case.extra:
        problem = case.extra(result.stdout.decode("utf-8", "replace"), err)
        if problem:
            wrong.append(problem)
    return ("wrong", wrong) if wrong else ("clean", [])


# -- the test ---------------------------------------------------------------------------------

ALL = cases()


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_hostile_input_ends_cleanly(case: Case, tmp_path, request):
    tiny = request.getfixturevalue("tiny_model") if case.needs == "tiny" else None
    result = run(case, tmp_path, sys.executable, tiny)
    category, problems = outcome(case, result)
    assert category == "clean", f"{category}: {'; '.join(problems)}"


def kind(case: Case) -> str:
    """A case's kind: its id without the command."""
    for command in sorted([*READERS, "constitution"], key=len, reverse=True):
        if case.id.startswith(command + "-"):
            return case.id[len(command) + 1:]
    return case.id


def test_the_corpus_covers_the_issue():
    kinds = {kind(c) for c in ALL}
    rows = {part for c in ALL for part in c.id.split("-") if part.startswith("row")}
    assert len(ALL) >= 200 and len(kinds) >= 20
    assert {f"row{n}" for n in (1, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17)} <= rows
    assert OTHERS <= {c.id for c in ALL}
