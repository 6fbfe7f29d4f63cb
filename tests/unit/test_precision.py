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


def test_bf16_products_measured_once_per_machine_and_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("CAITOOL_CACHE", str(tmp_path))
    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: True)
    measured = []

    def measure():
        measured.append(1)
        return 0.6           # a Xeon that lists avx512_bf16 and runs its products slower

    monkeypatch.setattr(precision, "measure_bf16_speedup", measure)
    precision.bf16_products_faster.cache_clear()
    assert precision.bf16_products_faster() is False
    [kept] = (tmp_path / "cpu").glob("bf16-*.json")
    assert '"speedup": 0.6' in kept.read_text()
    # A later process reads the answer instead of measuring again.
    precision.bf16_products_faster.cache_clear()
    assert precision.bf16_products_faster() is False
    assert measured == [1]
    # A damaged file is measured again and replaced.
    kept.write_text("{")
    monkeypatch.setattr(precision, "measure_bf16_speedup", lambda: 2.2)
    precision.bf16_products_faster.cache_clear()
    assert precision.bf16_products_faster() is True
    precision.bf16_products_faster.cache_clear()


def test_bf16_products_not_measured_without_the_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("CAITOOL_CACHE", str(tmp_path))
    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: False)
    monkeypatch.setattr(precision, "measure_bf16_speedup", lambda: pytest.fail("measured"))
    precision.bf16_products_faster.cache_clear()
    assert precision.bf16_products_faster() is False
    assert not (tmp_path / "cpu").exists()
    precision.bf16_products_faster.cache_clear()


def test_bf16_speedup_is_a_real_timing():
    speedup = precision.measure_bf16_speedup(repeats=1)
    assert 0.05 < speedup < 20
