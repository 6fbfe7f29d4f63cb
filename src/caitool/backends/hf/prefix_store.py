"""The few-shot block's keys and values kept on disk, so a new process need not compute them.

Every ``critique`` or ``revise`` process opens with the constitution's few-shot block, 1,400
tokens or more, and runs the model over it once before its first batch: 1.5 to 2 s of a
135M model's time on two cores, in each of the four processes of ``make demo``. The block's
keys and values depend only on the weights, the number type, the kernels and the tokens, so
they are kept in caitool's cache (``prefixes/`` next to the converted models, a safetensors
file per block) under a key made of all of those, and read back (tens of milliseconds)
wherever the key matches. A file that cannot be read is computed again and rewritten;
nothing here can fail a run. ``CAITOOL_PREFIX_STORE=0`` turns it off.

The verdict of the split-attention check (``shared_prefix.agrees``: four small passes of the
model, about 0.5 s of a 135M model's on two cores, in every process that reuses a prefix)
depends on the same things and is kept beside the blocks, a few bytes per model.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from caitool import models
from caitool.io.files import replacing

# Blocks kept (one per constitution and model in use; each a few tens of MiB at most).
MAX_FILES = 16


def enabled() -> bool:
    return os.environ.get("CAITOOL_PREFIX_STORE", "1") not in ("0", "false", "no", "")


def model_fingerprint(path: str, model: Any) -> str | None:
    """What the block's keys and values depend on, besides its tokens: the weights as they
    are in memory now (a sum per tensor: one read of the weights, tens of milliseconds
    where the pass takes seconds, and it sees weights changed after loading), the number
    type and layout of the layers, and the libraries that compute them. None for a model
    that is not a local directory."""
    import transformers

    directory = Path(path)
    if not directory.is_dir():
        return None
    try:
        with torch.inference_mode():
            sums = [float(torch.sum(tensor, dtype=torch.float64))
                    for tensor in (*model.parameters(), *model.buffers())
                    if tensor.layout == torch.strided and tensor.is_floating_point()]
    except (RuntimeError, TypeError):  # a tensor of a kind torch cannot sum: no store
        return None
    layers = sorted({type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__})
    parts = [str(directory.resolve()), sums, str(model.dtype), layers, type(model).__name__,
             torch.__version__, transformers.__version__]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _file(fingerprint: str, ids: list[int]) -> Path:
    key = hashlib.sha256(f"{fingerprint}:{','.join(map(str, ids))}".encode()).hexdigest()[:32]
    return models.cache_dir() / "prefixes" / f"{key}.safetensors"


def load(fingerprint: str, ids: list[int], config: Any, device: str) -> Any | None:
    """The cache of ``ids`` from disk, as a DynamicCache on ``device``, or None."""
    from safetensors.torch import load_file
    from transformers import DynamicCache

    path = _file(fingerprint, ids)
    if not path.is_file():
        return None
    try:
        tensors = load_file(str(path), device=device)
        layers = len(tensors) // 2
        cache = DynamicCache(config=config)
        for index in range(layers):
            cache.update(tensors[f"keys.{index}"], tensors[f"values.{index}"], index)
    except Exception:  # noqa: BLE001 - a damaged or foreign file is computed again
        return None
    if layers == 0 or cache.get_seq_length() != len(ids):
        return None
    os.utime(path)  # most recently used: kept longest
    return cache


def save(fingerprint: str, ids: list[int], layers: list[tuple[Any, Any]]) -> None:
    """Write the per-layer (keys, values) of ``ids``; quietly nothing where it cannot."""
    from safetensors.torch import save_file

    path = _file(fingerprint, ids)
    tensors = {}
    for index, (keys, values) in enumerate(layers):
        tensors[f"keys.{index}"] = keys.detach().cpu().contiguous()
        tensors[f"values.{index}"] = values.detach().cpu().contiguous()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as partial:  # whole or absent, whatever runs beside it
            save_file(tensors, str(partial))
        _trim(path.parent)
    except OSError:
        pass


def _verdict_file(key: str) -> Path:
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    return models.cache_dir() / "prefixes" / f"split-attention-{name}.json"


def load_verdict(key: str) -> bool | None:
    """The stored outcome of the split-attention check under ``key`` (the model's
    fingerprint and its attention kernel), or None."""
    try:
        verdict = json.loads(_verdict_file(key).read_text())["agrees"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return verdict if isinstance(verdict, bool) else None


def save_verdict(key: str, agrees: bool) -> None:
    path = _verdict_file(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as partial:
            partial.write_text(json.dumps({"agrees": agrees}))
    except OSError:
        pass


def _trim(folder: Path) -> None:
    files = sorted(folder.glob("*.safetensors"), key=lambda f: f.stat().st_mtime_ns)
    for old in files[:-MAX_FILES]:
        old.unlink(missing_ok=True)
