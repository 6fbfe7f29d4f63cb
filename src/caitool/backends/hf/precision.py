"""The number type of ``--dtype auto``: bfloat16 where the hardware computes it, float32 else.

On a GPU that supports it, bfloat16 everywhere. On a CPU, bfloat16 only where the cores
compute it natively (the ``avx512_bf16`` or ``amx_bf16`` flags of /proc/cpuinfo: AMD Zen 4
and later, Intel Cooper Lake, Sapphire Rapids and later) and only for generation by a model
wide enough for its matrix products to dominate. Elsewhere torch emulates bfloat16 through
float32 conversions, which is slower than float32 itself.

Measured on a 2-core AMD EPYC with AVX-512 BF16 (CPU seconds, one thread): SmolLM2-135M
(hidden size 576) runs a 16 x 128-token prompt pass in 2.96 s against 5.68 s in float32 and a
16-row decoding step in 128 ms against 143 ms; the 64-wide test model's step is slower in
bfloat16 (3 ms against 2 ms), its time being per-call overhead, not arithmetic.

Scoring (``compare``, ``eval``, ``eval-mc``) keeps float32 on a CPU. In bfloat16 the logits
keep 8 bits of mantissa (steps of 0.125 around 20), so the two options' log-probabilities
often round to the same value: on 16 of compare's pairs on the built-in model, bfloat16 gave
P(first) = 0.5 for 15, labels moved by up to 0.012 from float32's, and 3 of 16 changed side.
A label is a decision the pipeline keeps; a critique's wording is not.

Training is another matter: its products have many rows (a whole batch of sequences), where
arithmetic sets the pace, and the flags do not say that the kernels use the instructions
well. On a 2-core Xeon that lists ``avx512_bf16`` (no AMX), a 512 x 576 by 576 x 1536
product ran at 0.6x float32's speed in bfloat16, and ``make demo``'s LoRA step took 36 s of
``train_runtime`` under bfloat16 autocast against 26-28 s in float32; on the EPYC, 27 s
against 36 s. :func:`bf16_products_faster` measures it instead, once per CPU and torch
release (a few hundredths of a second), and keeps the answer in caitool's cache; ``make
demo`` asks it (``DEMO_BF16`` in the Makefile) whether to train under
bfloat16 autocast. (A decoding step, few rows and all the weights read, gains from bfloat16's
half-size weights on both machines: 20 against 29 ms for the linear layers of a 4-row step
here.)
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import time
from pathlib import Path
from typing import Any

# Narrower models are bound by per-call overhead, where neither bfloat16 nor weights laid
# out for the CPU (packed_linear.py) save anything.
MIN_WIDE_HIDDEN_SIZE = 512
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# The probe's product: many rows, as in training and prompt passes, of SmolLM2-135M's MLP shape.
PROBE_ROWS, PROBE_IN, PROBE_OUT = 512, 576, 1536
# bfloat16 autocast also converts; a gain below this is not worth a number type's rounding.
FASTER_BY = 1.2


@functools.cache
def cpu_computes_bf16() -> bool:
    """Whether this CPU has bfloat16 arithmetic instructions (Linux: /proc/cpuinfo's flags;
    elsewhere no, and float32)."""
    return has_bf16_flags(_cpuinfo())


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def has_bf16_flags(cpuinfo: str) -> bool:
    return any(flag in _flags(cpuinfo).split() for flag in NATIVE_BF16_FLAGS)


def _flags(cpuinfo: str) -> str:
    return next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")


@functools.cache
def bf16_products_faster() -> bool:
    """Whether this CPU runs many-row bfloat16 matrix products at least ``FASTER_BY`` times
    as fast as float32 ones: measured once per CPU and torch release, then read from
    ``$CAITOOL_CACHE/cpu/``. False without the instructions, with nothing measured."""
    if not cpu_computes_bf16():
        return False
    from caitool.io.files import replacing
    from caitool.models import cache_dir

    cpuinfo = _cpuinfo()
    model = next((line for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    model = model.partition(":")[2].strip()
    # The release from its metadata: reading the cached answer imports no torch.
    torch_release = importlib.metadata.version("torch")
    key = hashlib.sha256(f"{model}\n{_flags(cpuinfo)}\n{torch_release}".encode()).hexdigest()
    path = cache_dir() / "cpu" / f"bf16-{key[:16]}.json"
    try:
        return bool(json.loads(path.read_text())["faster"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    speedup = measure_bf16_speedup()
    found = {"faster": speedup >= FASTER_BY, "speedup": round(speedup, 3), "cpu": model,
             "torch": torch_release}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as partial:
            partial.write_text(json.dumps(found))
    except OSError:
        pass  # a read-only cache: measured again next time
    return found["faster"]


def measure_bf16_speedup(repeats: int = 5) -> float:
    """float32's time over bfloat16's for the probe's product (the best of ``repeats``)."""
    import torch

    def best(dtype: torch.dtype) -> float:
        rows = torch.randn(PROBE_ROWS, PROBE_IN).to(dtype)
        weight = torch.randn(PROBE_OUT, PROBE_IN).to(dtype)
        torch.nn.functional.linear(rows, weight)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            torch.nn.functional.linear(rows, weight)
            times.append(time.perf_counter() - started)
        return min(times)

    with torch.inference_mode():
        return best(torch.float32) / best(torch.bfloat16)


def generation_dtype(device: str, config: Any) -> str:
    """The dtype for generating with a model of ``config`` on ``device``."""
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device == "cpu" and cpu_computes_bf16() \
            and getattr(config, "hidden_size", 0) >= MIN_WIDE_HIDDEN_SIZE:
        return "bfloat16"
    return "float32"


def scoring_dtype(device: str, config: Any) -> str:
    """The dtype for scoring options: a GPU's choice, float32 on any other device."""
    return generation_dtype(device, config) if device.startswith("cuda") else "float32"
