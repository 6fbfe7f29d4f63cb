"""The CPU's fast paths give the plain paths' results, with a real (tiny) model: linear
layers with weights laid out for oneDNN (packed_linear.py), and the few-shot block's keys and
values read back from disk by a new backend (prefix_store.py)."""

from __future__ import annotations

import pytest
from test_hf_backend import critique_requests, sharpened

from caitool.backends.base import SamplingParams
from caitool.backends.hf import HFBackend, prefix_store

torch = pytest.importorskip("torch")


def test_packed_linear_layers_compute_what_the_plain_ones_do(tiny_model):
    from caitool.backends.hf.packed_linear import PackedLinear, pack_for_cpu

    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch has no oneDNN: nothing is packed")
    asked, stop = critique_requests("chat")
    params = SamplingParams(max_new_tokens=8, temperature=0.0, stop=stop)
    plain = sharpened(HFBackend(str(tiny_model), device="cpu", reuse_prefix=False))
    expected = plain.generate(asked, params)
    ids = torch.tensor([[1, 5, 9, 13, 2, 7]])
    with torch.inference_mode():
        plain_logits = plain.hf_model(input_ids=ids).logits
    linears = sum(type(m) is torch.nn.Linear for m in plain.hf_model.modules())
    assert pack_for_cpu(plain.hf_model) == linears > 0
    assert not any(type(m) is torch.nn.Linear for m in plain.hf_model.modules())
    assert any(isinstance(m, PackedLinear) for m in plain.hf_model.modules())
    with torch.inference_mode():
        packed_logits = plain.hf_model(input_ids=ids).logits
    assert torch.allclose(packed_logits, plain_logits, atol=1e-3, rtol=1e-4)
    assert plain.generate(asked, params) == expected
    assert pack_for_cpu(plain.hf_model) == 0  # nothing plain is left to pack


def test_the_few_shot_block_is_read_back_by_a_new_backend(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("CAITOOL_CACHE", str(tmp_path))
    asked, stop = critique_requests("chat")
    params = SamplingParams(max_new_tokens=8, temperature=0.0, stop=stop)
    expected = sharpened(HFBackend(str(tiny_model), device="cpu",
                                   reuse_prefix=False)).generate(asked, params)
    first = sharpened(HFBackend(str(tiny_model), device="cpu"))
    assert first.generate(asked, params) == expected
    stored = list((tmp_path / "prefixes").glob("*.safetensors"))
    assert len(stored) == 1

    passes = []
    second = sharpened(HFBackend(str(tiny_model), device="cpu"))
    block = len(first.prefix_cache.prefix.ids)
    second.hf_model.register_forward_pre_hook(
        lambda module, args, kwargs: passes.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    # Nor is the split-attention check run again: its verdict is stored beside the block.
    (verdict,) = (tmp_path / "prefixes").glob("split-attention-*.json")
    assert first.prefix_cache.split_attention is True and '"agrees": true' in verdict.read_text()
    from caitool.backends.hf import shared_prefix

    monkeypatch.setattr(shared_prefix, "agrees", lambda *a: pytest.fail("checked again"))
    assert second.generate(asked, params) == expected
    assert block not in passes  # the block's pass came from disk
    assert second.prefix_cache.prefix.ids == first.prefix_cache.prefix.ids
    assert second.prefix_cache.split_attention is True
    # A stored "no" is kept too: the rows then carry the block themselves, same texts.
    verdict.write_text('{"agrees": false}')
    refused = sharpened(HFBackend(str(tiny_model), device="cpu"))
    assert refused.generate(asked, params) == expected
    assert refused.prefix_cache.split_attention is False
    monkeypatch.undo()
    monkeypatch.setenv("CAITOOL_CACHE", str(tmp_path))

    # Weights changed after loading are another model: the stored block is not theirs.
    other = HFBackend(str(tiny_model), device="cpu")
    assert other.generate(asked, params) != expected
    assert len(list((tmp_path / "prefixes").glob("*.safetensors"))) == 2


def test_a_damaged_stored_block_is_computed_again(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("CAITOOL_CACHE", str(tmp_path))
    asked, stop = critique_requests("raw")
    params = SamplingParams(max_new_tokens=6, temperature=0.0, stop=stop)
    expected = HFBackend(str(tiny_model), device="cpu").generate(asked, params)
    (stored,) = (tmp_path / "prefixes").glob("*.safetensors")
    for damage in (stored.read_bytes()[:100], b"not a safetensors file"):
        stored.write_bytes(damage)
        assert HFBackend(str(tiny_model), device="cpu").generate(asked, params) == expected
        assert stored.stat().st_size > 1000  # rewritten whole


def test_the_store_can_be_turned_off_and_stays_bounded(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("CAITOOL_CACHE", str(tmp_path))
    monkeypatch.setenv("CAITOOL_PREFIX_STORE", "0")
    asked, stop = critique_requests("chat")
    HFBackend(str(tiny_model), device="cpu").generate(asked, SamplingParams(max_new_tokens=2,
                                                                           stop=stop))
    assert not (tmp_path / "prefixes").exists()
    monkeypatch.setenv("CAITOOL_PREFIX_STORE", "1")
    monkeypatch.setattr(prefix_store, "MAX_FILES", 2)
    fingerprint = "f" * 64
    for n in range(4):
        prefix_store.save(fingerprint, [n] * 40, [(torch.zeros(1, 1, 40, 4), torch.zeros(1, 1, 40, 4))])
    assert len(list((tmp_path / "prefixes").glob("*.safetensors"))) == 2
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(tiny_model))
    config.num_hidden_layers = 1
    assert prefix_store.load(fingerprint, [0] * 40, config, "cpu") is None  # the oldest went
    kept = prefix_store.load(fingerprint, [3] * 40, config, "cpu")
    assert kept is not None and kept.get_seq_length() == 40
    assert prefix_store.load(fingerprint, [3] * 39, config, "cpu") is None  # other tokens
