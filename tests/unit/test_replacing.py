"""io.files.replacing: a file is swapped whole or left as it was."""

import os

import pytest

from caitool.io.files import replacing


def test_the_new_content_replaces_the_file_and_nothing_is_left_beside_it(tmp_path):
    target = tmp_path / "eval.json"
    target.write_text("old")
    with replacing(target) as partial:
        assert partial.parent == tmp_path and partial.name.startswith(".")
        assert str(os.getpid()) in partial.name
        partial.write_text("new")
        assert target.read_text() == "old"  # not yet: a reader still sees the whole old file
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]


def test_an_error_keeps_the_old_file_removes_the_partial_one_and_goes_on(tmp_path):
    target = tmp_path / "references.jsonl"
    target.write_text("kept")
    with pytest.raises(RuntimeError, match="disk full"):
        with replacing(target) as partial:
            partial.write_text("half of it")
            raise RuntimeError("disk full")
    assert target.read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["references.jsonl"]


def test_a_missing_folder_is_an_oserror_for_the_caller_to_word(tmp_path):
    with pytest.raises(OSError):
        with replacing(tmp_path / "absent" / "file.json") as partial:
            partial.write_text("x")
