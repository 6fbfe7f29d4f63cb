"""bfloat16 against float32 on this CPU: what ``--dtype auto`` (backends/hf/precision.py) rests on.

In one process, one torch thread, CPU seconds (steadier than wall time on a shared machine),
the least of a few tries:

1. the built-in model's prompt pass (16 rows of 128 tokens) and a 16-row decoding step, in
   float32 and bfloat16; the same for a 64-wide model of the tests' shape;
2. compare's labels on ``--pairs`` judge pairs in both dtypes: the largest change of P(first)
   and how many labels change side (the reason scoring keeps float32 on a CPU).

    python bench/precision.py               # about 2 minutes on an idle core
    python bench/precision.py --pairs 4     # fewer pairs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import judge_pairs, loadavg, log, machine  # noqa: E402


def cpu_seconds(call, tries: int = 2) -> float:
    best = float("inf")
    for _ in range(tries):
        started = time.process_time()
        call()
        best = min(best, time.process_time() - started)
    return best


def forward_costs(model_dir: str, dtype) -> tuple[float, float]:
    """(prompt pass of 16 x 128 tokens, one decoding step of 16 rows after 64 tokens)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    ids = torch.randint(8, 1000, (16, 128), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        prompt = cpu_seconds(lambda: model(input_ids=ids, use_cache=True, logits_to_keep=1))
        steps = 8

        def decode() -> None:
            cache = model(input_ids=ids[:, :64], use_cache=True, logits_to_keep=1).past_key_values
            for _ in range(steps):
                model(input_ids=ids[:, :1], past_key_values=cache, use_cache=True, logits_to_keep=1)

        start = cpu_seconds(lambda: model(input_ids=ids[:, :64], use_cache=True, logits_to_keep=1))
        step = (cpu_seconds(decode) - start) / steps
    return prompt, step


def labels(pairs: int) -> tuple[dict, dict]:
    from caitool import constitution
    from caitool.backends.hf import HFBackend
    from caitool.stages import judging

    rules = constitution.load("harmless")
    items = judge_pairs(pairs)
    found, seconds = {}, {}
    for dtype in ("float32", "bfloat16"):
        backend = HFBackend("smollm2", device="cpu", dtype=dtype)
        started = time.process_time()
        found[dtype] = [j.p_first for j in judging.judge(backend, rules, items, judging.JudgeSettings())]
        seconds[dtype] = time.process_time() - started
    return found, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=16, help="judge pairs (16)")
    args = parser.parse_args()
    import torch

    from caitool.backends.hf import precision
    from caitool.models import DEFAULT_MODEL, local_model
    from caitool.testing.tiny import build

    torch.set_num_threads(1)
    info = machine(1, "cpu")
    lines = [f"- machine: {info['CPU']}; bfloat16 instructions: {precision.cpu_computes_bf16()}; "
             f"one torch thread; load average at start {info['load average at start']}", "",
             "| model | dtype | prompt pass, 16 x 128 tokens | decoding step, 16 rows |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="caitool-precision-") as tmp:
        for title, model_dir in (("SmolLM2-135M (hidden 576)", local_model(DEFAULT_MODEL)),
                                 ("the tests' tiny model (hidden 64)", str(build(Path(tmp) / "tiny")))):
            for dtype in (torch.float32, torch.bfloat16):
                log(f"{title}, {dtype}")
                prompt, step = forward_costs(model_dir, dtype)
                lines.append(f"| {title} | {str(dtype).split('.')[-1]} | {prompt:.2f} CPU s | "
                             f"{step * 1000:.0f} CPU ms |")
    log(f"compare's labels on {args.pairs} pairs in both dtypes")
    found, seconds = labels(args.pairs)
    moved = [abs(a - b) for a, b in zip(found["float32"], found["bfloat16"], strict=True)]
    flips = sum((a > 0.5) != (b > 0.5) for a, b in zip(found["float32"], found["bfloat16"], strict=True))
    ties = sum(p == 0.5 for p in found["bfloat16"])
    lines += ["", f"- compare's labels, {args.pairs} pairs (`harmless`, both orders): P(first) moves by up "
              f"to {max(moved):.3f} (mean {sum(moved) / len(moved):.3f}) in bfloat16; {flips} of "
              f"{args.pairs} labels change side; {ties} are exactly 0.5 in bfloat16 (against "
              f"{sum(p == 0.5 for p in found['float32'])} in float32); judging took "
              f"{seconds['bfloat16']:.1f} CPU s in bfloat16 against {seconds['float32']:.1f} in float32",
              f"- load average at end {loadavg()}"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
