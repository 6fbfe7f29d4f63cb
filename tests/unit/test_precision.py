"""--dtype auto on a CPU: bfloat16 for generation only where the cores compute it and the
model is wide enough to gain; float32 for scoring."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from caitool.backends.hf import precision

ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
ZEN2 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"


def test_bf16_flags_read_from_cpuinfo():
    assert precision.has_bf16_flags(ZEN4)
    assert precision.has_bf16_flags("flags\t: avx512f amx_bf16 amx_tile\n")
    assert not precision.has_bf16_flags(ZEN2)
    # Another flag that merely contains the name does not count.
    assert not precision.has_bf16_flags("flags\t: avx512_bf16x\n")
    assert not precision.has_bf16_flags("")


@pytest.mark.parametrize("native, hidden, generate", [
    (True, 576, "bfloat16"), (True, precision.MIN_WIDE_HIDDEN_SIZE, "bfloat16"),
    (True, 64, "float32"), (False, 576, "float32"), (False, 64, "float32")])
def test_cpu_choice(monkeypatch, native, hidden, generate):
    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: native)
    config = SimpleNamespace(hidden_size=hidden)
    assert precision.generation_dtype("cpu", config) == generate
    assert precision.scoring_dtype("cpu", config) == "float32"
    # Devices other than a CPU or a GPU (mps ...) keep float32.
    assert precision.generation_dtype("mps", config) == "float32"
