"""docs/reproduce.md's toy run, as the page writes it: the paper's roles kept apart, the
released prompt format, human helpfulness labels and RL snapshots, offline on tiny models."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT


def toy_block() -> str:
    page = (ROOT / "docs" / "reproduce.md").read_text()
    found = re.search(r"<!-- toy:start -->\s*```bash\n(.*?)```\s*<!-- toy:end -->", page, re.S)
    assert found, "docs/reproduce.md has no toy block"
    return found.group(1)


@pytest.mark.slow
def test_the_toy_reproduction_runs_as_written(tmp_path):
    run = tmp_path / "toy"
    # `caitool` on the page is this interpreter's.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", toy_block()], cwd=ROOT,
                          env={**os.environ, "RUN": str(run), "HF_HUB_OFFLINE": "1", "PATH": path},
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run / "eval.json").read_text())
    assert list(summary["systems"]) == ["base", "sl-cai", "rl-cai@1", "rl-cai"]
    assert summary["independence"]["independent"] is True
    rl = summary["independence"]["systems"]["rl-cai"]
    assert str(run / "judge") in rl["labelled_by"] and "people (hh-rlhf)" in rl["labelled_by"]
    assert [point["system"] for point in summary["frontier"]["rl-cai"]] == ["sl-cai", "rl-cai@1", "rl-cai"]
    assert (run / "frontier.png").stat().st_size > 0
    sft = json.loads((run / "sft" / "caitool_training.json").read_text())
    assert sft["base_model"] == str(run / "base") and sft["format"] == "raw"
    assert "evasiveness" in summary["elo"]
