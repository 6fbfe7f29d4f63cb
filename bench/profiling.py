"""Where ``caitool critique``'s time goes: cProfile over the command, run as a user runs it.

    python bench/profiling.py                 # builds the bench model, 64 records
    python bench/profiling.py --records 16

bench/run.py runs it too and writes the summary into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, build_bench_model, choose_threads, log, write_records  # noqa: E402

# The linear layers' kernels by their profile names: plain nn.Linear, and the layers the hf
# backend packs for oneDNN (backends/hf/packed_linear.py).
LINEAR_KERNELS = ("_nn.linear", "mkldnn._linear_pointwise")


def command(model_dir: Path, records: Path, out: Path, prof: Path, max_new_tokens: int) -> list[str]:
    return [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "caitool", "critique",
            str(records), "-m", str(model_dir), "-c", "harmless", "--max-new-tokens",
            str(max_new_tokens), "-o", str(out)]


def profile_critique(model_dir: Path, work: Path, records: int, threads: int,
                     max_new_tokens: int = 64) -> dict:
    inputs = write_records(work / "profiled-in.jsonl", records)
    prof = work / "critique.prof"
    args = command(model_dir, inputs, work / "profiled-out.jsonl", prof, max_new_tokens)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"profiled caitool critique failed:\n{done.stderr}")
    return {**summarise(pstats.Stats(str(prof)), records, max_new_tokens), "threads": threads}


def summarise(stats: pstats.Stats, records: int, max_new_tokens: int) -> dict:
    entries = [(file, name, nc, tt, ct) for (file, _, name), (_, nc, tt, ct, _) in stats.stats.items()]

    def cumulative(file_part: str, name: str) -> tuple[float, int]:
        """The outermost call's cumulative time (and its number of calls)."""
        found = [(ct, nc) for f, n, nc, _, ct in entries if file_part in f and n == name]
        return max(found) if found else (0.0, 0)

    def where(file: str, name: str) -> str:
        if file == "~":
            return name
        parts = Path(file).parts
        short = "/".join(parts[parts.index("site-packages") + 1:]) if "site-packages" in parts \
            else "/".join(parts[-3:])
        return f"{short}:{name}"

    per_record = {label: cumulative(file, name) for label, file, name in (
        ("building the prompts (`render.critique_prompt`)", "caitool/render.py", "critique_prompt"),
        ("rendering them with the chat template (`render.prompt_text`)", "caitool/render.py", "prompt_text"),
        ("tokenising them (`PrefixCache.tokenize`)", "hf/prefix_cache.py", "tokenize"),
        ("decoding the outputs (`batch_decode`)", "tokenization_utils", "batch_decode"),
        ("checking the records (`check_for_critique`)", "caitool/schema.py", "check_for_critique"),
        ("writing JSON lines (`json.dumps`)", "json/__init__.py", "dumps"),
    )}
    ops = {label: sum(tt for f, n, _, tt, _ in entries if f == "~" and any(k in n for k in keys))
           for label, keys in (("linear", LINEAR_KERNELS),
                               ("attention", ("scaled_dot_product_attention", "torch.matmul")))}
    own = sorted(entries, key=lambda e: -e[3])[:10]
    caitool_own = sorted((e for e in entries if "/caitool/" in e[0]), key=lambda e: -e[3])[:4]
    return {
        "records": records, "max_new_tokens": max_new_tokens,
        "total": sum(e[3] for e in entries),
        "load": cumulative("caitool/backends/hf/backend.py", "_load"),
        "loop": cumulative("caitool/io/stream.py", "run"),
        "forward": cumulative("modeling_llama.py", "forward"),
        "per_record": per_record,
        "ops": ops,
        "caitool": sum(e[3] for e in entries if "/caitool/" in e[0]),
        "own": [(where(f, n), nc, tt) for f, n, nc, tt, _ in own],
        "caitool_own": [(where(f, n), nc, tt) for f, n, nc, tt, _ in caitool_own],
    }


def section(p: dict, shown_command: str) -> list[str]:
    """The Profile section of docs/benchmarks.md."""
    total, load, loop, forward = p["total"], p["load"][0], p["loop"][0], p["forward"][0]
    work = loop - load

    def share(seconds: float, of: float = total) -> str:
        return f"{seconds:.1f} s ({seconds / of:.0%})"

    per_record = sum(seconds for seconds, _ in p["per_record"].values())
    return [
        "## Profile",
        "",
        f"cProfile over `caitool critique` on {p['records']} records with the bench model "
        f"(`harmless`, few-shot, up to {p['max_new_tokens']} new tokens, default batch size, "
        f"OMP_NUM_THREADS={p.get('threads', 1)}), as a subprocess:",
        "",
        f"    {shown_command}",
        "",
        f"- whole process {total:.1f} s: interpreter start-up and imports "
        f"{share(total - loop)}; importing torch and transformers and loading the model (inside the "
        f"first batch) {share(load)}; the "
        f"batch loop's own work {share(work)}",
        f"- of that work, the model's forward passes (`LlamaForCausalLM.forward`, "
        f"{p['forward'][1]} calls: the few-shot block once, the check of split attention, the rows' "
        f"prompts and one per generated token) take {share(forward, work)}; everything else (the "
        f"sampling loop's own steps, the stream loop, prompts, tokeniser, JSON) "
        f"{share(work - forward, work)}",
        f"- the work done per record, {per_record * 1000:.0f} ms for {p['records']} records in all: "
        + "; ".join(f"{label} {seconds * 1000:.1f} ms ({calls} calls)"
                    for label, (seconds, calls) in p["per_record"].items()),
        f"- own time in caitool's code: {p['caitool']:.2f} s, most of it in "
        + ", ".join(f"`{name}` {tt:.2f} s ({calls} calls)" for name, calls, tt in p["caitool_own"]),
        "",
        "| top functions by own time (start-up included) | calls | own time |",
        "|---|---|---|",
        *[f"| `{name}` | {calls} | {share(tt)} |" for name, calls, tt in p["own"]],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", default="auto")
    args = parser.parse_args()
    threads = choose_threads(args.threads)
    import transformers

    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory(prefix="caitool-profile-") as tmp:
        work = Path(tmp)
        log("building the bench model")
        model = build_bench_model(work)
        log(f"profiling caitool critique, {args.records} records")
        found = profile_critique(model, work, args.records, threads, args.max_new_tokens)
    print("\n".join(section(found, shown(args.records, args.max_new_tokens))))


def shown(records: int, max_new_tokens: int) -> str:
    return (f"python -m cProfile -o critique.prof -m caitool critique records.jsonl -m BENCH_MODEL "
            f"-c harmless --max-new-tokens {max_new_tokens} -o out.jsonl   # {records} records; "
            "or: python bench/profiling.py")


if __name__ == "__main__":
    main()
