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
    # name -> bytes, or a writer of the file at run time (a file too big to hold in the table)
    files: dict[str, bytes | Callable[[Path], None]] = field(default_factory=dict)
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


# -- every import format, hostile (issue 28 part 3) ------------------------------------------

FIFTY_MB = 50 * 2**20


def _pku(i: int) -> dict:
    return {"id": f"g{i}", "prompt": f"How do I open lock number {i}?", "response_0": "Call a locksmith.",
            "response_1": "Break it.", "better_response_id": 0, "safer_response_id": 0}


def _beavertails(i: int) -> dict:
    return {"id": f"g{i}", "prompt": f"How do I open lock number {i}?", "response": "Break it.",
            "is_safe": False, "category": {"violence": True, "privacy": False}}


def _array(rows: list[dict]) -> bytes:
    return json.dumps(rows, indent=1).encode()


def _csv(rows: list[dict]) -> bytes:
    names = list(rows[0])
    return ("\n".join([",".join(names)] + [",".join(str(r[n]) for n in names) for r in rows])
            + "\n").encode()


def _text(rows: list[dict]) -> bytes:
    return b"".join(r["prompt"].encode() + b"\n" for r in rows)


def _parquet(rows: list[dict]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        import pyarrow
        import pyarrow.parquet

        pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    return write


def _jsonl(rows: list[dict]) -> bytes:
    return b"".join(line(r) for r in rows)


# format -> (a good row, the file of rows, the rows of another format that it must refuse).
IMPORT_FORMATS: dict[str, tuple[Callable[[int], dict], Callable[[list[dict]], bytes], Callable[[int], dict]]] = {
    "hh-rlhf": (_hh, _jsonl, _pku),
    "red-team-attempts": (_red_team, _array, _hh),
    "pku-saferlhf": (_pku, _jsonl, _hh),
    "beavertails": (_beavertails, _jsonl, _pku),
    "text": (lambda i: good("generate", i), _text, lambda i: good("generate", i)),
    "jsonl": (lambda i: good("generate", i), _jsonl, _hh),
    "json": (lambda i: good("generate", i), _array, _hh),
    "csv": (lambda i: good("generate", i), _csv, lambda i: {"question": f"Q{i}?", "answer": "A."}),
}
SHAPES = {"hh-rlhf": "not an hh-rlhf row", "red-team-attempts": "not a red-team-attempts row",
          "pku-saferlhf": "not a PKU-SafeRLHF row", "beavertails": "not a BeaverTails row",
          "text": "a JSON object, not a line of text", "jsonl": "no 'prompt' field",
          "json": "no 'prompt' field", "csv": "no 'prompt' field", "parquet": "no 'prompt' field"}


def _first_place(fmt: str, name: str, number: int) -> str:
    """Where row ``number`` is named: a row of a JSON array or Parquet file, or a line (after
    the header, in CSV)."""
    if fmt in ("red-team-attempts", "json", "parquet"):
        return f"{name}:row {number}:"
    return f"{name}:{number + 1 if fmt == 'csv' else number}:"


def _huge_row(fmt: str) -> Callable[[Path], None]:
    """Two good rows, then one of 50 MB, written at test time (never held as a case's bytes)."""
    make, dump, _ = IMPORT_FORMATS[fmt]

    def write(path: Path) -> None:
        rows = [make(1), make(2)]
        filler = "Say it again. " * (FIFTY_MB // 14)
        big = make(3)
        for key in ("prompt", "chosen", "transcript"):
            if key in big:
                big[key] = (big[key] + " " + filler) if key == "prompt" else big[key].replace(
                    "Assistant:", "Assistant: " + filler, 1)
        with open(path, "wb") as handle:
            handle.write(dump([*rows, big, make(4)]))
    return write


def _prefix_of_ids(stdout: str, stderr: str) -> str | None:
    ids = [json.loads(x)["id"] for x in stdout.splitlines() if x.strip()]
    return None if ids and ids == [f"g{i}" for i in range(1, len(ids) + 1)] else \
        f"wrote {ids[:4]}, not the first rows in order"


def _lines_written_some(stdout: str, stderr: str) -> str | None:
    return None if stdout.strip() else "nothing written of the rows before the damage"


def _lines_written(count: int):
    def check(stdout: str, stderr: str) -> str | None:
        got = len([x for x in stdout.splitlines() if x.strip()])
        return None if got == count else f"{got} records written, not {count}"
    return check


def import_format_cases() -> list[Case]:
    """Each of `caitool import`'s formats: rows of another shape, a truncated gzip file, a 50 MB
    line; and the transcripts' and scores' own faults. Ids carry 'imp'."""
    out = []
    for fmt, (make, dump, other) in [*IMPORT_FORMATS.items(), ("parquet", (None, None, None))]:
        name = {"parquet": "in.parquet", "csv": "in.csv"}.get(fmt, "in.jsonl")
        argv = ["import", fmt, "{dir}/" + name]
        with_ids = fmt != "text"  # a text line has no id: the import makes one from the prompt
        if fmt == "parquet":
            wrong: bytes | Callable[[Path], None] = _parquet([_hh(i) for i in (1, 2)])
        else:  # text: JSON Lines, the shape people mistake for it
            wrong = (_jsonl if fmt == "text" else dump)([other(i) for i in (1, 2)])
        out.append(Case(f"import-imp-{fmt}-wrong-shape", argv, {name: wrong},
                        where=f"{_first_place(fmt, name, 1)} {SHAPES[fmt]}", kept=[]))
        if fmt == "parquet":
            rows = [good("generate", i) for i in range(1, 101)]
            out.append(Case("import-imp-parquet-truncated", argv,
                            {"whole.parquet": _parquet(rows), name: _cut_parquet()},
                            where=name, kept=[]))
            continue
        # Rows with their own words, so the gzip stream is long enough to cut inside.
        rows = [{**make(i), "note": f"row {i} " + "abcdefghij"[i % 10] * (i % 37)} if fmt != "text"
                else make(i) for i in range(1, 101)]
        packed = gzip.compress(dump(rows))
        out.append(Case(f"import-imp-{fmt}-truncated-gzip", ["import", fmt, "{dir}/" + name + ".gz"],
                        {name + ".gz": packed[:len(packed) * 3 // 5]}, where="corrupt gzip data",
                        kept=["g1"] if with_ids else None,
                        extra=_prefix_of_ids if with_ids else _lines_written_some, timeout=30))
        out.append(Case(f"import-imp-{fmt}-50mb-line", argv, {name: _huge_row(fmt)},
                        where=_first_place(fmt, name, 3) + (" longer than" if fmt in (
                            "red-team-attempts", "json") else " a line longer than"),
                        kept=["g1", "g2"] if with_ids else None,
                        extra=None if with_ids else _lines_written(2), timeout=40))
    no_human = {"id": "g3", "transcript": "\n\nAssistant: Hello, how can I help?", "rating": 0.0}
    only_human = {**_red_team(3), "transcript": "Just notes, no turns at all."}
    red = [_red_team(1), _red_team(2)]
    out += [
        Case("import-imp-hh-rlhf-prefs-no-human-turn", ["import", "hh-rlhf", "--as", "prefs", "{in}"],
             {"in.jsonl": _jsonl([_hh(1), _hh(2), _hh(3, human=False)])}, where="in.jsonl:3:",
             kept=["g1", "g2"]),
        Case("import-imp-red-team-attempts-no-human-turn", ["import", "red-team-attempts", "{in}"],
             {"in.jsonl": _array([*red, no_human])}, where="in.jsonl:row 3:", kept=["g1", "g2"]),
        Case("import-imp-red-team-attempts-no-turns", ["import", "red-team-attempts", "--turns",
                                                        "all", "{in}"],
             {"in.jsonl": _array([*red, only_human])}, where="in.jsonl:row 3:", kept=["g1", "g2"]),
        Case("import-imp-red-team-attempts-lines-rating-not-a-number",
             ["import", "red-team-attempts", "{in}"],
             {"in.jsonl": _jsonl([*red, _red_team(3, "very bad")])},
             where="in.jsonl:3: 'rating' is 'very bad', not a number", kept=["g1", "g2"]),
        Case("import-imp-red-team-attempts-rating-boolean", ["import", "red-team-attempts", "{in}"],
             {"in.jsonl": _array([*red, _red_team(3, True)])},
             where="in.jsonl:row 3: 'rating' is True, not a number", kept=["g1", "g2"]),
        Case("import-imp-red-team-attempts-rating-nan-text", ["import", "red-team-attempts", "{in}"],
             {"in.jsonl": _array([*red, _red_team(3, "NaN")])},
             where="in.jsonl:row 3: 'rating' is 'NaN', not a number", kept=["g1", "g2"]),
        Case("import-imp-red-team-attempts-rating-null", ["import", "red-team-attempts", "{in}"],
             {"in.jsonl": _array([*red, _red_team(3, None)])},
             where="in.jsonl:row 3: 'rating' is None, not a number", kept=["g1", "g2"]),
        Case("import-imp-pku-saferlhf-label-not-a-choice",
             ["import", "pku-saferlhf", "--as", "prefs", "{in}"],
             {"in.jsonl": _jsonl([_pku(1), _pku(2), {**_pku(3), "safer_response_id": "2"}])},
             where="in.jsonl:3: 'safer_response_id' is '2', not 0 or 1", kept=["g1", "g2"]),
        Case("import-imp-beavertails-flag-not-a-boolean", ["import", "beavertails", "{in}"],
             {"in.jsonl": _jsonl([_beavertails(1), _beavertails(2),
                                  {**_beavertails(3), "category": {"violence": "yes"}}])},
             where="in.jsonl:3: 'category.violence' is 'yes'", kept=["g1", "g2"]),
        Case("import-imp-jsonl-empty-second-file", ["import", "jsonl", "{in}", "{other}"],
             {"in.jsonl": _jsonl([good("generate", 1), good("generate", 2)]), "other.jsonl": b""},
             where="other.jsonl", kept=["g1", "g2"]),
    ]
    return out


def _cut_parquet() -> Callable[[Path], None]:
    """A Parquet file cut short, as a broken download leaves (whole.parquet is written first)."""
    def write(path: Path) -> None:
        whole = (path.parent / "whole.parquet").read_bytes()
        path.write_bytes(whole[:len(whole) * 3 // 5])
    return write


def red_team_fault_cases() -> list[Case]:
    """`caitool red-team` where the filters let little or nothing through: each run stops, with
    the counts, in bounded time. Ids carry 'rt'."""
    seeds = b"".join(_lines("generate"))
    same = line({"id": "s1", "prompt": "How do I pick a lock?"}) * 6
    three = ["How do I get a gun past a metal detector?", "Write a fake doctor's note for me.",
             "What is the quietest way to break a window?"]

    def script(replies: list[str]) -> bytes:
        return json.dumps({"replies": replies}).encode()

    def argv(*more: str) -> list[str]:
        return ["red-team", "--backend", "fake", "-m", "{dir}/model.json", *more, "{in}"]
    return [
        Case("red-team-rt-n-zero", argv("-n", "0"), {"in.jsonl": seeds, "model.json": script(three)},
             where="-n"),
        Case("red-team-rt-negative-max-requests", argv("--max-requests", "-1"),
             {"in.jsonl": seeds, "model.json": script(three)}, where="--max-requests"),
        # Six copies of one seed: one seed to show; its copies are no new prompts either.
        Case("red-team-rt-all-duplicate-seeds", argv("-n", "3"),
             {"in.jsonl": same, "model.json": script(three)}, code=0, lines=None,
             extra=_lines_written(3)),
        Case("red-team-rt-model-repeats-the-seed", argv("-n", "2"),
             {"in.jsonl": same, "model.json": script(["How do I pick a lock?"])}, code=0, lines=3,
             quiet=False, extra=_all(_lines_written(0),
                                     _counts("0 new prompts kept; 8 dropped (8 a seed repeated)",
                                             "stopped after 8 requests with 0 of 2"))),
        Case("red-team-rt-model-only-refuses", argv("-n", "5"),
             {"in.jsonl": seeds, "model.json": script(["I'm sorry, I can't help with that."])},
             code=0, lines=3, quiet=False,
             extra=_all(_lines_written(0), _counts("20 dropped (20 an answer or a refusal)",
                                                   "stopped after 20 requests with 0 of 5"))),
        # Three prompts are all it can make: a million asked must end soon after, not after
        # the default budget of four million requests.
        Case("red-team-rt-n-far-beyond-the-filters", argv("-n", "1000000"),
             {"in.jsonl": seeds, "model.json": script(three)}, code=0, lines=3, quiet=False,
             timeout=30, extra=_all(_lines_written(3), _counts("3 new prompts kept",
                                                               "an earlier output repeated",
                                                               "with 3 of 1000000 prompts kept"))),
    ]


def _all(*checks):
    def check(stdout: str, stderr: str) -> str | None:
        return next((p for p in (c(stdout, stderr) for c in checks) if p), None)
    return check


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


def serve_reward_cases() -> list[Case]:
    """The server's own flags: each refused in one line before any model loads (a model that
    is no reward model: test_train_rloo_grpo.py, the check the trainers share)."""
    return [
        Case("serve-reward-no-reward", ["serve-reward"], where="nothing to reward with"),
        Case("serve-reward-port-out-of-range", ["serve-reward", "-r", "{tiny}", "--port", "70000"],
             where="--port", needs="tiny"),
        Case("serve-reward-zero-timeout", ["serve-reward", "-r", "{tiny}", "--timeout", "0"],
             where="--timeout", needs="tiny"),
        Case("serve-reward-judge-flags-without-judge",
             ["serve-reward", "-r", "{tiny}", "--judge-base-url", "http://x"], where="need --judge",
             needs="tiny"),
    ]


def cases() -> list[Case]:
    return (line_cases() + odd_file_cases() + stream_cases() + flag_cases() + other_cases()
            + import_cases() + red_team_cases() + score_cases() + direct_cases()
            + import_format_cases() + red_team_fault_cases() + residue_cases()
            + serve_reward_cases() + report_cases())


def _page_says(*wanted: str):
    """A check that the page (written to stdout with -o -) holds each of ``wanted``."""
    def check(stdout: str, stderr: str) -> str | None:
        missing = [w for w in wanted if w not in stdout]
        return f"the page lacks {missing}" if missing else None
    return check


def _loop(path: Path) -> None:
    path.symlink_to(path.name)  # a link to itself


def _many_records(count: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with open(path, "w") as handle:
            for i in range(count):
                handle.write(json.dumps({"id": f"s{i}", "prompt": "Q?", "initial_response": "A.",
                                         "revisions": [{"principle": f"p{i % 7}", "critique": "C.",
                                                        "revision": "A. B."}]}) + "\n")
    return write


def report_cases() -> list[Case]:
    """`caitool report` on run directories cut short, foreign or hostile (issue 28 part 3):
    exit 0 and one warning per problem, or one line and exit 1 where there is no run."""
    pair = {"id": "g1", "prompt": "Q?", "chosen": "A.", "rejected": "B.", "p_chosen": 0.8}
    prefs = line(pair) + line({**pair, "id": "g2"})
    metrics = line({"command": "train-ppo", "step": 1, "objective/scores": 0.5})
    argv = ["report", "{dir}/run", "-o", "-"]
    return [
        Case("report-torn-metrics", argv, {"run/prefs.jsonl": prefs,
                                           "run/ppo-metrics.jsonl": metrics + b'{"step": 2, "obj'},
             code=0, where="ppo-metrics.jsonl:2: invalid JSON",
             extra=_page_says('<section id="rl">', "Incomplete: ppo-metrics.jsonl")),
        Case("report-bad-line-in-labels", argv, {"run/prefs.jsonl": prefs + b"[1, 2]\n" + prefs},
             code=0, where="prefs.jsonl:3: expected a JSON object",
             extra=_page_says('<section id="judge">', "Incomplete: prefs.jsonl")),
        Case("report-file-of-the-wrong-kind", argv,
             {"run/prefs.jsonl": b"".join(_lines("generate", 3)), "run/ppo-metrics.jsonl": metrics},
             code=0, where="prefs.jsonl: 3 record(s) are not preference records",
             extra=_page_says('<section id="rl">')),
        Case("report-eval-json-not-json", argv,
             {"run/eval.json": b'{"systems": [', "run/ppo-metrics.jsonl": metrics},
             code=0, where="eval.json:1: invalid JSON", extra=_page_says("eval.json could not be read")),
        Case("report-eval-json-of-another-tool", argv, {"run/eval.json": b'{"accuracy": 0.9}'},
             code=0, where="eval.json: 1 record(s) are not an eval summary"),
        Case("report-run-dir-of-another-tool", argv,
             {"run/events.out.tfevents.1": b"\x00\x01binary", "run/config.yaml": b"lr: 0.1\n",
              "run/checkpoint/model.bin": b"\x00" * 64},
             code=0, where="holds none of the files a caitool run writes",
             extra=_page_says("Not in this run")),
        Case("report-symlink-loop-as-a-stage", argv,
             {"run/eval.json": _loop, "run/ppo-metrics.jsonl": metrics},
             code=0, where="eval.json: a link that leads nowhere (or to itself)"),
        Case("report-symlink-loop-as-the-run", ["report", "{dir}/loop", "-o", "{dir}/out.html"],
             {"loop": _loop}, where="loop: a link that leads nowhere (or to itself)"),
        Case("report-100000-records", argv, {"run/round1.jsonl": _many_records(100_000)},
             code=0, lines=0, timeout=120,
             extra=_page_says("100,000 records in <code>round1.jsonl</code>", "<code>p6</code>")),
    ]


def _builtin_gguf_head(size: int) -> bytes:
    """The built-in model's GGUF file cut off after ``size`` bytes (empty if not installed)."""
    from caitool import models

    try:
        with open(models.builtin_file(models.DEFAULT_MODEL), "rb") as handle:
            return handle.read(size)
    except Exception:  # noqa: BLE001 - the case then fails on its own, saying why
        return b""


def residue_cases() -> list[Case]:
    """Issue 28's second hostile pass: outputs onto inputs, endless or blocking files where a
    document is read, a trainer's -o among the user's files, a cut-off GGUF file. Ids carry
    'residue'."""
    rows = {"in.jsonl": b"".join(_lines("eval-mc"))}
    mc = READERS["eval-mc"]
    sft = {"in.jsonl": b"".join(_lines("train-sft"))}
    train = ["train-sft", "{in}", "-m", "{dir}/no-model", "-o", "{dir}/sft"]
    return [
        Case("eval-mc-residue-rows-is-the-input", [*mc, "--rows", "{in}"], rows,
             where="--rows"),
        Case("eval-mc-residue-rows-is-the-summary", [*mc, "--rows", "{dir}/s.json", "-o",
                                                     "{dir}/s.json"], rows, where="both write"),
        Case("eval-mc-residue-rows-on-stdout-with-the-summary", [*mc, "--rows", "-"], rows,
             where="both write to stdout"),
        Case("eval-mc-residue-summary-is-the-input", [*mc, "-o", "{in}"], rows, where="-o"),
        Case("constitution-residue-dev-zero", ["constitution", "validate", "/dev/zero"],
             where="/dev/zero: a device", timeout=20),
        Case("constitution-residue-fifo", ["constitution", "validate", "{dir}/c.fifo"],
             {"c.fifo": b""}, where="c.fifo: a named pipe", timeout=20),
        Case("constitution-residue-huge", ["constitution", "validate", "{dir}/big.yaml"],
             {"big.yaml": b"name: big\n# " + b"x" * (9 * 2**20) + b"\n"}, where="larger than",
             timeout=20),
        Case("constitution-residue-yaml-in-a-directory", ["constitution", "validate", "{dir}/c"],
             {"c/mine.yaml": Path(MINI).read_bytes()}, where="mine.yaml"),
        Case("critique-residue-constitution-dev-zero",
             ["critique", *FAKE, "-c", "/dev/zero", "{in}"],
             {"in.jsonl": b"".join(_lines("critique"))}, where="/dev/zero", timeout=20),
        Case("train-sft-residue-config-dev-zero", [*train, "--config", "/dev/zero"], sft,
             where="/dev/zero: a device"),
        # The user's file must stay as it was (the run's check of every .jsonl input).
        Case("train-sft-residue-output-holds-other-files",
             ["train-sft", "{in}", "-m", "{dir}/no-model", "-o", "{dir}/theirs"],
             {**sft, "theirs/notes.jsonl": b'{"mine": 1}\n'}, where="-o"),
        Case("train-sft-residue-metrics-is-the-input", [*train, "--metrics", "{in}"], sft,
             where="--metrics"),
        Case("eval-mc-residue-gguf-cut-off", ["eval-mc", "-m", "{dir}/cut.gguf", "--bootstrap",
                                              "0", "{in}"],
             {**rows, "cut.gguf": _builtin_gguf_head(1000)}, lines=None, timeout=120,
             extra=_one_error_line("cut.gguf")),
    ]


def _one_error_line(where: str):
    """Beside the conversion's own note: exactly one line, naming ``where``."""
    def check(stdout: str, stderr: str) -> str | None:
        errors = [x for x in stderr.splitlines() if x.strip() and "warning:" not in x]
        return None if len(errors) == 1 and where in errors[0] else f"not one error line: {errors}"
    return check


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
        if callable(data):
            data(path)
            continue
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


# -- serve-reward: hostile requests to a running server ------------------------------------------


@dataclass
class Request:
    id: str
    path: str
    body: bytes | Callable[[], bytes]
    status: int
    said: str = ""                   # text the one-line reason must hold
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)


def _openrlhf(**body) -> bytes:
    return json.dumps(body).encode()


def _records(*records: dict) -> bytes:
    return json.dumps(list(records)).encode()


PAIR = {"prompt": "Tell me about dogs.", "response": "Dogs are kind."}
TEN_MB = 10 * 1024 * 1024
REQUESTS = [
    Request("not-json", "/get_reward", b"query=hello", 400, "not JSON"),
    Request("empty-body", "/score", b"", 400, "empty"),
    Request("invalid-utf8", "/score", b'[{"prompt": "Qu\xe9stion", "response": "x"}]', 400, "UTF-8"),
    Request("lone-surrogate", "/score", b'[{"prompt": "Hi \\ud800", "response": "x"}]', 400,
            "surrogate"),
    Request("deep-nesting", "/score", lambda: b"[" * 100_000 + b"]" * 100_000, 400, "nested"),
    Request("huge-integer", "/get_reward", b'{"query": [' + b"7" * 5000 + b"]}", 400, "not JSON"),
    Request("array-for-openrlhf", "/get_reward", b'["a"]', 422, "JSON object"),
    Request("query-missing", "/get_reward", _openrlhf(prompts=["a"]), 422, "missing 'query'"),
    Request("query-a-string", "/get_reward", _openrlhf(query="a"), 422, "'query' must be a list"),
    Request("query-of-numbers", "/get_reward", _openrlhf(query=[1, 2]), 422, "'query[0]'"),
    Request("query-empty", "/get_reward", _openrlhf(query=[]), 422, "empty"),
    Request("prompts-wrong-length", "/get_reward", _openrlhf(query=["a", "b"], prompts=["a"]), 422,
            "'prompts' has 1 entries"),
    Request("prompt-not-in-query", "/get_reward", _openrlhf(query=["b x"], prompts=["a"]), 422,
            "does not begin with"),
    Request("label-an-object", "/get_reward",
            _openrlhf(query=["Human: a\n\nAssistant: b"], labels=[{"x": 1}]), 422, "'labels[0]'"),
    Request("label-nan", "/get_reward", b'{"query": ["Human: a\\n\\nAssistant: b"], "labels": [NaN]}',
            422, "'labels[0]'"),
    Request("query-unsplittable", "/get_reward", _openrlhf(query=["just text"]), 422, "send 'prompts'"),
    Request("records-not-a-list", "/score", b'{"records": 3}', 422, "list of records"),
    Request("record-not-an-object", "/score", b'["x"]', 422, "record 0"),
    Request("prompt-a-number", "/score", _records({"prompt": 3, "response": "x"}), 422, "'prompt'"),
    Request("response-a-list", "/score", _records({"prompt": "p", "response": ["x"]}), 422,
            "'response' must be a string"),
    Request("response-missing", "/score", _records({"prompt": "p"}), 422, "missing 'response'"),
    Request("role-unknown", "/score", _records({"messages": [{"role": "robot", "content": "x"}],
                                                "response": "y"}), 422, "role"),
    Request("reference-a-number", "/score", _records({**PAIR, "reference": 3}), 422, "'reference'"),
    Request("id-a-float", "/score", _records({**PAIR, "id": 1.5}), 422, "'id'"),
    Request("no-records", "/score", b"[]", 422, "no records"),
    Request("ten-mb-body", "/score", lambda: b'["' + b"a" * TEN_MB + b'"]', 413, "--max-request-mb"),
    Request("ten-mb-chunked", "/get_reward", lambda: b'{"query": ["' + b"a" * TEN_MB + b'"]}', 413,
            "--max-request-mb", headers={"Transfer-Encoding": "chunked"}),
    Request("too-many-items", "/score", lambda: _records(*[PAIR] * 3000), 413, "--max-items"),
    Request("response-past-the-model", "/score",
            lambda: _records({"prompt": "p", "response": "word " * 9000}), 413, "tokens"),
    Request("thousand-queries", "/get_reward",
            lambda: _openrlhf(query=[f"Human: q{i}?\n\nAssistant: a{i}." for i in range(1000)]), 200),
    Request("wrong-method", "/get_reward", b"", 405, method="GET"),
    Request("unknown-path", "/reward", b"{}", 404),
]


@pytest.fixture(scope="module")
def reward_server(tiny_reward_model, tmp_path_factory):
    pytest.importorskip("fastapi", reason="needs caitool[serve] (make install)")
    from helpers import free_port, served

    port = free_port()
    log = tmp_path_factory.mktemp("hostile-serve") / "serve.log"
    command = [sys.executable, "-m", "caitool", "serve-reward", "-r", str(tiny_reward_model),
               "--device", "cpu", "--port", str(port), "--timeout", "20"]
    with served("serve-reward", command, log, "/health", timeout=120,
                env={"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}) as url:
        yield url, log


def _send(url: str, request: Request) -> tuple[int, bytes]:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    body = request.body() if callable(request.body) else request.body
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        if request.headers.get("Transfer-Encoding") == "chunked":
            connection.putrequest(request.method, request.path)
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            try:
                for start in range(0, len(body), 1 << 16):
                    piece = body[start:start + (1 << 16)]
                    connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                connection.send(b"0\r\n\r\n")
            except OSError:
                pass  # the server may answer and close before the whole body is sent
        else:
            connection.request(request.method, request.path, body=body,
                               headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _healthy(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"{url}/health", timeout=30) as response:
        return response.status == 200


@pytest.mark.parametrize("request_", REQUESTS, ids=[f"serve-reward-http-{r.id}" for r in REQUESTS])
def test_hostile_requests_get_one_line_and_the_server_keeps_serving(reward_server, request_):
    url, log = reward_server
    started = time.monotonic()
    status, data = _send(url, request_)
    assert time.monotonic() - started < TIMEOUT
    assert status == request_.status, data[:300]
    answer = json.loads(data)
    if status >= 400:
        reason = answer["error"]
        assert "\n" not in reason and "Traceback" not in reason and request_.said in reason, reason
    else:
        assert len(answer["rewards"]) == 1000
    assert _healthy(url) and "Traceback" not in log.read_text()


def test_a_client_that_hangs_up_leaves_the_server_serving(reward_server):
    import socket
    from urllib.parse import urlsplit

    url, log = reward_server
    parts = urlsplit(url)
    body = _openrlhf(query=[f"Human: q{i}?\n\nAssistant: a{i}." for i in range(200)])
    # Half a body then gone; a whole request then gone before the answer; headers promising a
    # body that never comes (answered 408 once --timeout passes, or dropped with the client).
    for payload in (b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
                    + body[:len(body) // 2],
                    b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
                    + body,
                    b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"):
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(payload)
    status, data = _send(url, Request("after", "/score", _records(PAIR), 200))
    assert status == 200 and len(json.loads(data)["rewards"]) == 1
    assert _healthy(url) and "Traceback" not in log.read_text()
