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
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

# Narrower models are bound by per-call overhead, where neither bfloat16 nor weights laid
# out for the CPU (packed_linear.py) save anything.
MIN_WIDE_HIDDEN_SIZE = 512
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_computes_bf16() -> bool:
    """Whether this CPU has bfloat16 arithmetic instructions (Linux: /proc/cpuinfo's flags;
    elsewhere no, and float32)."""
    try:
        return has_bf16_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


def has_bf16_flags(cpuinfo: str) -> bool:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return any(flag in line.split() for flag in NATIVE_BF16_FLAGS)
    return False


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
