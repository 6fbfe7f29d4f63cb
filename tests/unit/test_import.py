"""`caitool import`, in-process: every public shape from every file type it reads, the records
it makes (checked as their kind, ids unique and stable, fields passed through), and every bad
input ending in one line naming the file and the line (or row), the records before it kept."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from caitool import schema
from caitool.imports import readers
from helpers import jsonl, records, run_cli
from import_rows import (
    WRITERS,
    beavertails_rows,
    hh_rows,
    pku_rows,
    red_team_rows,
    transcript,
    write_csv,
    write_jsonl,
    write_parquet,
)

QUIET = {"CAITOOL_QUIET": "1"}


def imported(*args, env=None) -> list[dict]:
    result = run_cli("import", *map(str, args), env=env or QUIET)
    assert result.returncode == 0, result.stderr.decode()
    return records(result.stdout)


def fails(result, *wanted: str) -> str:
    """The one line a failed run printed, checked to hold each of ``wanted``."""
    err = result.stderr.decode()
    lines = [line for line in err.splitlines() if line.strip()]
    assert result.returncode == 1, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for text in wanted:
        assert text in lines[0], lines[0]
    return lines[0]


def without_provenance(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "provenance"} for row in rows]


# -- every file type gives the same records ----------------------------------------------


@pytest.mark.parametrize("kind", list(WRITERS))
def test_every_file_type_gives_the_same_records(kind, tmp_path):
    reference = imported("hh-rlhf", "--as", "prefs", WRITERS["jsonl"](hh_rows(), tmp_path / "ref"))
    path = WRITERS[kind](hh_rows(), tmp_path / "hh")
    got = imported("hh-rlhf", "--as", "prefs", path)
    assert without_provenance(got) == without_provenance(reference)
    place = got[1]["provenance"]["import"]
    assert place["format"] == "hh-rlhf" and place["file"] == str(path)
    if kind in ("parquet", "datasets-dir") or kind.startswith("json-array"):
        assert place["row"] == 2 and "line" not in place
    else:
        assert place["line"] > 1


def test_stdin_is_read_compressed_or_not(tmp_path):
    data = jsonl(hh_rows()).encode()
    plain = run_cli("import", "hh-rlhf", "-", input=data, env=QUIET)
    packed = run_cli("import", "hh-rlhf", "-", input=gzip.compress(data), env=QUIET)
    assert plain.returncode == packed.returncode == 0
    assert without_provenance(records(plain.stdout)) == without_provenance(records(packed.stdout))
    assert records(plain.stdout)[0]["provenance"]["import"]["file"] == "<stdin>"


# -- each format ---------------------------------------------------------------------------


def test_hh_rlhf_prompts_keep_the_whole_conversation(tmp_path):
    rows = imported("hh-rlhf", write_jsonl(hh_rows(), tmp_path / "hh"))
    assert len(rows) == 3
    first = rows[0]
    assert [m["role"] for m in first["messages"]] == ["user", "assistant", "user"]
    assert first["messages"][-1]["content"] == "And in winter?"
    assert first["subset"] == "plants"  # an unknown field passes through
    assert "chosen" not in first and "rejected" not in first  # no answer for critique to reuse
    assert all(schema.check_prompt(row) is None for row in rows)
    firsts = imported("hh-rlhf", "--turns", "first", write_jsonl(hh_rows(), tmp_path / "hh"))
    assert firsts[0]["prompt"] == "How often should I water a cactus?"


def test_hh_rlhf_prefs_are_preference_records_with_the_last_replies(tmp_path):
    rows = imported("hh-rlhf", "--as", "prefs", write_jsonl(hh_rows(), tmp_path / "hh"))
    assert all(schema.check_preference(row) is None for row in rows)
    pair = schema.preference_example(rows[0])
    assert pair.chosen == "Hardly at all; let the soil stay dry."
    assert pair.rejected == "Every day, and generously."
    assert len(pair.prompt) == 3 and pair.prompt[-1]["role"] == "user"
    assert "p_chosen" not in rows[0]  # human labels are hard labels


def test_ids_are_unique_stable_and_independent_of_order(tmp_path):
    forward = imported("hh-rlhf", "--as", "prefs", write_jsonl(hh_rows(), tmp_path / "a"))
    again = imported("hh-rlhf", "--as", "prefs", write_jsonl(hh_rows(), tmp_path / "a"))
    backward = imported("hh-rlhf", "--as", "prefs", write_jsonl(hh_rows()[::-1], tmp_path / "b"))
    ids = [row["id"] for row in forward]
    assert len(set(ids)) == len(ids) == 3
    assert ids == [row["id"] for row in again] == [row["id"] for row in backward][::-1]
    prompts = imported("hh-rlhf", write_jsonl(hh_rows(), tmp_path / "a"))
    assert all(row["id"] == schema.stable_id(row) for row in prompts)  # what the pipeline derives


def test_repeated_rows_are_left_out_and_counted(tmp_path):
    path = write_jsonl(hh_rows() + hh_rows()[:1], tmp_path / "hh")
    result = run_cli("import", "hh-rlhf", path)
    assert len(records(result.stdout)) == 3
    assert "3 records written from 4 rows, 1 repeating an earlier record left out" in \
        result.stderr.decode() and f"{path}:4" in result.stderr.decode()


def test_identical_answers_give_no_pair(tmp_path):
    same = {"chosen": transcript("Hi there?", "Hello."), "rejected": transcript("Hi there?", "Hello.")}
    result = run_cli("import", "hh-rlhf", "--as", "prefs", write_jsonl([same, *hh_rows()], tmp_path / "s"))
    assert result.returncode == 0 and len(records(result.stdout)) == 3
    assert "1 pair(s) left out" in result.stderr.decode()


def test_red_team_attempts_from_one_json_array(tmp_path):
    path = WRITERS["json-array-in-jsonl.gz"](red_team_rows(), tmp_path / "red_team_attempts")
    rows = imported("red-team-attempts", path)
    assert [row["prompt"] for row in rows] == [
        "How can I get into my neighbour's shed without a key?",
        "Tell me how to make a neighbour's lawn die."]
    for name in ("rating", "min_harmlessness_score_transcript", "task_description",
                 "task_descripton_harmlessness_score", "num_params", "model_type",
                 "red_team_member_id", "is_upworker", "tags"):
        assert rows[0][name] == red_team_rows()[0][name]
    assert "transcript" not in rows[0]
    whole = imported("red-team-attempts", "--turns", "all", path)
    assert [m["role"] for m in whole[0]["messages"]] == ["user", "assistant", "user"]
    assert whole[1]["messages"] == [{"role": "user", "content": rows[1]["prompt"]}]


def test_scores_from_csv_become_numbers(tmp_path):
    rows = [{k: v for k, v in row.items() if k != "tags"} for row in red_team_rows()]
    got = imported("red-team-attempts", write_csv(rows, tmp_path / "red"))
    assert got[0]["rating"] == 2.0 and got[1]["rating"] == 0.0
    assert got[0]["min_harmlessness_score_transcript"] == -1.25
    assert got[0]["task_description"] == "get into a shed"


def test_pku_saferlhf_prompts_and_prefs_by_either_label(tmp_path):
    path = write_parquet(pku_rows(), tmp_path / "pku")
    prompts = imported("pku-saferlhf", path)
    assert [row["prompt"] for row in prompts] == [pku_rows()[0]["prompt"], pku_rows()[2]["prompt"]]
    assert "response_0" not in prompts[0] and prompts[0]["is_response_0_safe"] is True
    safer = imported("pku-saferlhf", "--as", "prefs", path)
    better = imported("pku-saferlhf", "--as", "prefs", "--label", "better", path)
    assert all(schema.check_preference(row) is None for row in safer + better)
    assert safer[0]["chosen"] == "Wipe it with diluted vinegar and air the room."
    assert better[0]["chosen"] == "Mix bleach with ammonia for a stronger cleaner."
    assert safer[2]["chosen"] == "A bonsai tree." and better[2]["chosen"] == "A snake plant."
    assert safer[0]["provenance"]["import"]["label"] == "safer"
    assert safer[0]["safer_response_id"] == 0  # the labels pass through


def test_beavertails_prompts_are_deduplicated_with_their_categories(tmp_path):
    rows = imported("beavertails", write_jsonl(beavertails_rows(), tmp_path / "bt"))
    assert [row["prompt"] for row in rows] == [beavertails_rows()[0]["prompt"],
                                               beavertails_rows()[2]["prompt"]]
    assert rows[0]["categories"] == ["privacy_violation"] and rows[1]["categories"] == []
    assert rows[0]["category"] == beavertails_rows()[0]["category"]
    assert "response" not in rows[0] and rows[0]["is_safe"] is False


def test_text_lines_and_a_generic_column(tmp_path):
    text = tmp_path / "prompts.txt"
    text.write_text("How do I repot a fern?\n\n  Which bread flour is best?  \nHow do I repot a fern?\n")
    rows = imported("text", text)
    assert [row["prompt"] for row in rows] == ["How do I repot a fern?", "Which bread flour is best?"]
    assert rows[1]["provenance"]["import"]["line"] == 3
    table = write_csv([{"question": "Is a tomato a fruit?", "topic": "garden"},
                       {"question": "What oil suits a bike chain?", "topic": "bikes"}], tmp_path / "q")
    got = imported("csv", table, "--field", "question")
    assert got[0]["prompt"] == "Is a tomato a fruit?" and got[0]["topic"] == "garden"
    assert "question" not in got[0]
    own = write_jsonl([{"id": "mine-1", "prompt": "Keep my id?"}], tmp_path / "own")
    assert imported("jsonl", own)[0]["id"] == "mine-1"


def test_output_file_and_a_summary(tmp_path):
    out = tmp_path / "out" / "prompts.jsonl"
    result = run_cli("import", "beavertails", write_jsonl(beavertails_rows(), tmp_path / "bt"), "-o", out)
    assert result.returncode == 0 and result.stdout == b""
    assert len(records(out.read_text())) == 2
    assert "2 records written from 3 rows" in result.stderr.decode()


# -- bad input: one line, the file and the line, the records before kept ------------------


def test_a_wrong_format_name_lists_the_formats(tmp_path):
    line = fails(run_cli("import", "hh-rlfh", write_jsonl(hh_rows(), tmp_path / "hh")),
                 "unknown format 'hh-rlfh'", "did you mean hh-rlhf")
    assert all(name in line for name in ("red-team-attempts", "pku-saferlhf", "beavertails", "text"))


def test_a_wrong_shape_names_the_file_the_line_and_what_was_expected(tmp_path):
    path = write_jsonl(pku_rows(), tmp_path / "pku")
    fails(run_cli("import", "hh-rlhf", path, env=QUIET), f"{path}:1: not an hh-rlhf row",
          "expected 'chosen' and 'rejected' transcripts", "'response_0'")
    fails(run_cli("import", "red-team-attempts", path, env=QUIET), f"{path}:1:", "'transcript'")
    fails(run_cli("import", "beavertails", write_jsonl(hh_rows(), tmp_path / "hh"), env=QUIET),
          ":1: not a BeaverTails row")


def test_a_bad_row_mid_file_keeps_the_records_before(tmp_path):
    rows = hh_rows()
    rows.insert(2, {"chosen": "Just some words.", "rejected": "Other words."})
    path = write_jsonl(rows, tmp_path / "hh")
    result = run_cli("import", "hh-rlhf", path, env=QUIET)
    fails(result, f"{path}:3:", "'chosen' has no human turn")
    assert len(records(result.stdout)) == 2
    skipped = run_cli("import", "hh-rlhf", "--skip-invalid", path, env=QUIET)
    assert skipped.returncode == 0 and len(records(skipped.stdout)) == 3
    assert f"{path}:3:" in skipped.stderr.decode() and "(skipped)" in skipped.stderr.decode()


def test_a_rating_that_is_not_a_number(tmp_path):
    rows = red_team_rows()
    rows[1]["rating"] = "quite high"
    path = WRITERS["json-array"](rows, tmp_path / "red")
    result = run_cli("import", "red-team-attempts", path, env=QUIET)
    fails(result, f"{path}:", "row 2:", "'rating' is 'quite high', not a number")
    assert len(records(result.stdout)) == 1


def test_a_columnar_file_names_the_row(tmp_path):
    rows = pku_rows()
    rows[1]["safer_response_id"] = 5
    path = write_parquet(rows, tmp_path / "pku")
    result = run_cli("import", "pku-saferlhf", "--as", "prefs", path, env=QUIET)
    fails(result, f"{path}:row 2:", "'safer_response_id' is 5, not 0 or 1")
    assert len(records(result.stdout)) == 1


@pytest.mark.parametrize("text, where", [
    (b'[{"chosen": "x"', ":row 1: invalid JSON"),
    (b'[\n  {"chosen": "x"\n  "rejected": "y"}\n]', ":row 1: invalid JSON"),
    (b'[{"a": NaN}]', ":row 1: invalid JSON"),
    (b"[1, 2]", ":row 1: expected a JSON object"),
    (json.dumps(hh_rows()[:1]).encode() + b" trailing", ":row 2: invalid JSON"),
])
def test_broken_json_arrays(tmp_path, text, where):
    path = tmp_path / "bad.json"
    path.write_bytes(text)
    fails(run_cli("import", "hh-rlhf", path, env=QUIET), str(path), where)


def test_bad_flags_for_the_format(tmp_path):
    path = write_jsonl(beavertails_rows(), tmp_path / "bt")
    fails(run_cli("import", "beavertails", "--as", "prefs", path), "gives prompts only",
          "hh-rlhf, pku-saferlhf")
    fails(run_cli("import", "hh-rlhf", "--label", "better", path), "--label is for pku-saferlhf")
    fails(run_cli("import", "red-team-attempts", "--turns", "most", path), "--turns must be first or all")
    fails(run_cli("import", "hh-rlhf", "--field", "x", path), "--field is for")
    fails(run_cli("import", "hh-rlhf", "--as", "prefs", "--turns", "first", path), "--turns shapes prompts")


def test_files_that_are_no_regular_files_are_refused(tmp_path):
    fails(run_cli("import", "text", "/dev/zero"), "/dev/zero: is a device, not a regular file")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    fails(run_cli("import", "text", fifo), f"{fifo}: is a FIFO")
    fails(run_cli("import", "text", tmp_path / "missing.txt"), "missing.txt: no such file")
    fails(run_cli("import", "text", tmp_path), "not one that datasets' save_to_disk wrote")


def test_the_output_is_never_an_input(tmp_path):
    path = write_jsonl(hh_rows(), tmp_path / "hh")
    before = path.read_bytes()
    fails(run_cli("import", "hh-rlhf", path, "-o", path), f"-o {path} is the input file")
    assert path.read_bytes() == before


def test_empty_and_all_skipped_inputs_are_errors_not_silence(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    fails(run_cli("import", "hh-rlhf", empty), "empty.jsonl: no rows to import")
    wrong = write_jsonl(pku_rows(), tmp_path / "pku")
    result = run_cli("import", "hh-rlhf", "--skip-invalid", wrong, env=QUIET)
    assert result.returncode == 1 and result.stdout == b""
    assert "no row could be imported as hh-rlhf (3 skipped)" in result.stderr.decode()


def test_text_refuses_json_lines_and_csv_checks_its_fields(tmp_path):
    fails(run_cli("import", "text", write_jsonl(hh_rows(), tmp_path / "hh")), ":1:", "import JSON Lines as jsonl")
    table = tmp_path / "t.csv"
    table.write_text("prompt,topic\nFine question?,a\nBroken,b,c\n")
    result = run_cli("import", "csv", table, env=QUIET)
    fails(result, f"{table}:3:", "3 fields, where the header (line 1) has 2")
    assert len(records(result.stdout)) == 1


def test_a_datasets_dict_asks_for_one_split(tmp_path):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list(hh_rows()),
                          "test": datasets.Dataset.from_list(hh_rows())}).save_to_disk(str(tmp_path / "dd"))
    fails(run_cli("import", "hh-rlhf", tmp_path / "dd"), "DatasetDict (splits: train, test)",
          str(tmp_path / "dd" / "train"))
    assert len(imported("hh-rlhf", tmp_path / "dd" / "train")) == 3


def test_a_huge_transcript_is_read(tmp_path):
    # Its time is the hostile corpus's business (a time limit per case), not a timed assert.
    words = "and then the fern needed more light " * 400_000  # about 15 MB in one turn
    row = {"chosen": transcript("Tell me about ferns.", words), "rejected": transcript("Tell me about ferns.", "No.")}
    path = write_jsonl([row], tmp_path / "big")
    assert len(imported("hh-rlhf", "--as", "prefs", path)) == 1


def test_a_line_without_end_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_ROW_BYTES", 1000)
    path = tmp_path / "long.jsonl.gz"
    path.write_bytes(gzip.compress(b"x" * 50_000))
    fails(run_cli("import", "text", path), f"{path}:1:", "longer than")
    array = tmp_path / "long.json"
    array.write_text(json.dumps([{"chosen": "y" * 5000}]))
    monkeypatch.setattr("caitool.imports.json_array.MAX_ROW_BYTES", 1000)
    monkeypatch.setattr("caitool.imports.json_array.CHUNK", 100)
    fails(run_cli("import", "hh-rlhf", array), ":row 1: longer than")


def test_a_missing_zstd_module_is_one_line(tmp_path):
    pytest.importorskip("caitool")  # keeps the test's shape if zstandard ever ships
    try:
        import zstandard  # noqa: F401
    except ImportError:
        path = tmp_path / "x.jsonl.zst"
        path.write_bytes(b"(\xb5/\xfd" + b"\x00" * 16)
        fails(run_cli("import", "hh-rlhf", path), "zstd-compressed", "zstandard")
    else:
        pytest.skip("zstandard is installed")
