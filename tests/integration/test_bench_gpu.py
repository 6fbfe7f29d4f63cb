"""`make bench-gpu` at its CPU sizes: every stage runs on a real (random) Llama and the table
that a GPU run writes into docs/benchmarks.md is written where it is asked to be."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_gpu_bench():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up by name.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_bench_gpu_small_form_measures_every_stage(tmp_path, tiny_model):
    gpu = load_gpu_bench()
    device = gpu.Device("cpu")
    # The tests' tiny model has the small form's shape; building another would only add time.
    results = gpu.measure(gpu.SMALL, device, tmp_path, model_dir=tiny_model)
    for path in ("backend", "bare"):
        seconds, tokens, peak = results["generation"][path]
        assert seconds > 0 and 0 < tokens <= gpu.SMALL.batch * gpu.SMALL.new_tokens and peak > 0
    seconds, pairs, _ = results["judging"]
    assert seconds > 0 and pairs == gpu.SMALL.pairs
    for stage in ("sft", "rm"):
        assert results[stage]["flops"] > 0 and results[stage]["parameters"] > 0
    assert results["matmul"] > 0 and results["nominal"] is None

    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nkept\n")
    info = {"CPU": "a CPU", "software": "torch"}
    text = gpu.section(results, gpu.SMALL, device, info, "python bench/gpu.py --small")
    gpu.publish(text, str(out), "gpu")
    written = out.read_text()
    assert written.startswith("# Benchmarks\n\nkept\n") and "<!-- gpu:start -->" in written
    assert text.strip() in written and "on CPU (`make bench-gpu`)" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 6 and all(re.search(r"\d", row) for row in rows)
