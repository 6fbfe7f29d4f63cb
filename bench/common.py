"""What every benchmark script shares: timings, the machine's description, token counting,
the benchmark's inputs (records, judge pairs, constitutions without few-shot examples) and
writing a section of docs/benchmarks.md."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["CAITOOL_QUIET"] = "1"

DOCS = ROOT / "docs/benchmarks.md"
# The benchmark model: Llama architecture, ~25M parameters. Its tokenizer also learns the
# constitutions' and examples' words, so that text costs about as many tokens as it would
# with a real model's tokenizer (~4.5 characters per token) rather than 2.
MODEL_SHAPE = dict(hidden_size=512, layers=8, heads=8, intermediate_size=1152, vocab_size=4096)
# 'caitool critique' / 'caitool compare' default --batch-size: runs batch as the commands do.
DEFAULT_BATCH_SIZE = 16
RESPONSE = ("I understand why you are asking. Here is what I would suggest instead: talk it "
            "through with someone you trust, and keep everyone safe.")


@dataclass
class Timing:
    seconds: float
    records: int
    tokens: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def median(timings: list[Timing]) -> Timing:
    """The run of median duration (for two, their mean), noting every round's seconds."""
    ordered = sorted(timings, key=lambda t: t.seconds)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        chosen = ordered[middle]
        result = Timing(chosen.seconds, chosen.records, chosen.tokens, dict(chosen.extra))
    else:
        a, b = ordered[middle - 1], ordered[middle]
        result = Timing((a.seconds + b.seconds) / 2, a.records, (a.tokens + b.tokens) // 2,
                        dict(a.extra))
    result.extra["rounds"] = [t.seconds for t in timings]
    return result


def detail(t: Timing, unit: str = "records") -> str:
    text = f"{t.records} {unit} in {t.seconds:.1f} s"
    rounds = t.extra.get("rounds", [])
    if len(rounds) > 1:
        text += " (rounds: " + ", ".join(f"{s:.1f}" for s in rounds) + " s)"
    return text


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def verdict(ok: bool, text: str) -> str:
    return f"{'met' if ok else 'MISSED'}: {text}"


def loadavg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def choose_threads(requested: str) -> int:
    """torch threads: a number, or ``auto``: torch's default, or 1 when the machine is
    already half loaded (threads beyond the free cores spin against the other work)."""
    import torch

    if requested != "auto":
        return int(requested)
    # Other work that comes and goes during a run of several minutes: judge by the busier of
    # the last minute and the last five.
    busy = max(os.getloadavg()[:2]) >= (os.cpu_count() or 1) / 2
    return 1 if busy else torch.get_num_threads()


def machine(threads: int, device: str) -> dict[str, str]:
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    ram = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 ** 2:.0f} GiB"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        # Two machines both called "AMD EPYC" differ by AVX-512 (and bfloat16) or not.
        "CPU": f"{cpu}, {os.cpu_count()} logical cores, torch's kernels for "
               f"{torch.backends.cpu.get_cpu_capability()}",
        "RAM": ram,
        "GPU": gpu,
        "device used": device,
        "torch threads": str(threads),
        "load average at start": loadavg(),
        "software": f"Python {platform.python_version()}, torch {torch.__version__}, "
                    f"transformers {transformers.__version__}",
    }


def shown_command(script: str, argv: list[str]) -> str:
    """The command, without the options that only say where results go."""
    shown, skip = [], False
    for arg in argv:
        if skip or arg.split("=")[0] in ("--output", "--results"):
            skip = not skip and "=" not in arg
            continue
        shown.append(arg)
    return " ".join(["python", script, *shown])


# -- counting generated tokens ----------------------------------------------------------------


@dataclass
class Generated:
    """Tokens generated, in all and per row (in the order the rows came back)."""

    tokens: int = 0
    rows: list[int] = field(default_factory=list)


def row_lengths(new_tokens, ends: list[int]) -> list[int]:
    """Each row's tokens of a ``generate()`` output's new columns before its first
    end-of-sequence token (after which generate() pads)."""
    import torch

    ended = torch.isin(new_tokens, torch.tensor(ends, device=new_tokens.device))
    width = torch.full_like(ended[:, 0], new_tokens.shape[1], dtype=torch.long)
    return torch.where(ended.any(-1), ended.int().argmax(-1), width).tolist()


@contextlib.contextmanager
def counting(backend):
    """Count what ``backend`` generates, the same way on both of its paths (rows leaving
    the batch, or ``generate()``) and as :func:`row_lengths` counts bare ``generate()``:
    each row's tokens up to, not including, its end-of-sequence token."""
    from caitool.backends.hf import decode

    seen = Generated()
    model, tokenizer = backend.hf_model, backend.tokenizer
    ends = decode.end_token_ids(model, tokenizer)
    sample, generate = decode.sample, model.generate

    def note(lengths: list[int]) -> None:
        seen.rows += lengths
        seen.tokens += sum(lengths)

    def counted_sample(*args, **kwargs):
        rows = sample(*args, **kwargs)
        note([len(row) for row in rows])
        return rows

    def counted_generate(*args, **kwargs):
        output = generate(*args, **kwargs)
        note(row_lengths(output[:, kwargs["input_ids"].shape[1]:], ends))
        return output

    decode.sample, model.generate = counted_sample, counted_generate
    try:
        yield seen
    finally:
        decode.sample = sample
        del model.generate


def sampling_kwargs(max_new_tokens: int, pad_id: int, temperature: float = 1.0) -> dict:
    """What the hf backend asks of generate() (temperature 1 samples, 0 is greedy)."""
    if temperature > 0:
        return dict(max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                    top_p=1.0, top_k=0, pad_token_id=pad_id)
    return dict(max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None,
                top_k=None, pad_token_id=pad_id)


# -- inputs ---------------------------------------------------------------------------------


def build_bench_model(work: Path) -> Path:
    from caitool.testing.tiny import build

    extra = "\n".join(p.read_text() for p in sorted((ROOT / "constitutions").glob("*.yaml"))
                      + sorted((ROOT / "examples").glob("*.jsonl")))
    return build(work / "bench-25m", extra_text=extra, **MODEL_SHAPE)


def write_records(path: Path, count: int) -> Path:
    """Red-team prompts, each with the same answer to critique."""
    # A prompt's own field: a conversation is a record's `messages`.
    prompts = [{key: row[key] for key in ("prompt", "messages") if key in row}
               for row in map(json.loads, (ROOT / "examples/red_team.jsonl").open())]
    with path.open("w") as out:
        for i in range(count):
            out.write(json.dumps({"id": f"r{i}", **prompts[i % len(prompts)],
                                  "response": RESPONSE}) + "\n")
    return path


def judge_pairs(count: int) -> list:
    """``count`` pairs of real answers to real questions: the conversations and the first two
    options of examples/judge-eval.jsonl's questions (one good answer and one bad, of 10 to
    80 words), repeated when more are asked for."""
    from caitool.stages.judging import PairItem

    found = []
    for line in (ROOT / "examples/judge-eval.jsonl").open():
        text = json.loads(line)["prompt"]
        transcript = re.search(r"\n\n(Human: .*?)\n\n\n", text, flags=re.S)
        options = re.findall(r"\[\[\[(.*?)\]\]\]", text, flags=re.S)
        if transcript is None or len(options) < 2:
            raise SystemExit("examples/judge-eval.jsonl: a question the benchmark cannot read")
        messages = []
        for turn in re.split(r"\n\n(?=Human: |Assistant: )", transcript.group(1)):
            role, content = turn.split(": ", 1)
            messages.append({"role": "user" if role == "Human" else "assistant", "content": content})
        found.append((messages, options[0], options[1]))
    return [PairItem(f"p{i}", *found[i % len(found)]) for i in range(count)]


def without_examples(rules):
    """The same constitution without any few-shot examples."""
    return dataclasses.replace(rules, name=f"{rules.name}-no-examples", critique_examples=[],
                               comparison_examples=[])


# -- docs/benchmarks.md -----------------------------------------------------------------------


def write_section(path: Path, name: str, section: str) -> None:
    """Put ``section`` between its markers in ``path`` (bench/run.py keeps the marked sections
    when it rewrites the file), or at its end."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{section.strip()}\n\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def publish(text: str, output: str, name: str) -> None:
    """A bench's table to stdout, and into its marked section of ``output`` unless that is -."""
    print(text)
    if output != "-":
        write_section(Path(output), name, text)
        log(f"written to {output}")


def kept_sections(path: Path) -> str:
    """Everything from the first marked section on (the real model's figures, make demo's)."""
    old = path.read_text() if path.exists() else ""
    kept = re.search(r"<!-- [a-z-]+:start -->.*", old, flags=re.S)
    return kept.group(0) if kept else ""
