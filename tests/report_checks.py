"""`caitool report` checks shared by the unit, browser and pipeline tests: small run
directories built by hand, and the page opened in headless chromium."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
NO_CHROMIUM = "no chromium on this machine (make browser installs Debian's chromium)"
SECTIONS = ("run", "supervised", "judge", "reward", "rl", "evaluation")


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def supervised(i: int, rounds: list[tuple[str, str]]) -> dict:
    """A record whose initial answer is "base i" and whose rounds are (principle, revision)."""
    return {"id": f"s{i}", "prompt": f"Question {i}?", "initial_response": f"base {i}",
            "revisions": [{"principle": p, "critique": "Too blunt.", "revision": r} for p, r in rounds],
            "provenance": {"generate": {"backend": "hf", "model": "writer"},
                           "critique": {"backend": "hf", "model": "writer", "constitution": "harmless"}}}


def preference(i: int, p: float, judgments: list[tuple[str, str, float]], agree: bool) -> dict:
    return {"id": f"q{i}", "prompt": f"Question {i}?", "chosen": "yes", "rejected": "no",
            "p_chosen": p, "tie": abs(p - 0.5) < 1e-9, "orders_agree": agree,
            "judgments": [{"principle": n, "order": o, "p_first": f} for n, o, f in judgments],
            "provenance": {"compare": {"model": "judge", "constitution": "harmless"}}}


def mc_row(correct: float, incorrect: float) -> dict:
    credit = 1.0 if correct > incorrect else 0.5 if correct == incorrect else 0.0
    return {"file": "mc.jsonl", "line": 1, "credit": credit, "correct_scores": [correct],
            "incorrect_scores": [incorrect]}


def small_run(folder: Path) -> Path:
    """A run directory with every section's data, its numbers known by construction."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "round2.jsonl", [
        supervised(1, [("kind", "base 1 but kinder"), ("honest", "base 1 but kinder")]),
        supervised(2, [("kind", "base 2"), ("kind", "new 2 here now")]),
    ])
    write_jsonl(folder / "prefs.jsonl", [
        preference(1, 0.9, [("harm", "ab", 0.8), ("harm", "ba", 0.4)], False),
        preference(2, 0.7, [("harm", "ab", 0.7), ("harm", "ba", 0.6)], True),
    ])
    write_jsonl(folder / "judge-rows.jsonl", [mc_row(0.0, 0.0), mc_row(math.log(3), 0.0),
                                              mc_row(0.0, math.log(3))])
    (folder / "judge-accuracy.json").write_text(json.dumps({
        "files": [{"file": "mc.jsonl", "rows": 3, "accuracy": 0.5, "ci": [0.0, 1.0],
                   "chance": 0.5}], "bootstrap": {"samples": 10, "level": 0.95, "seed": 0}}))
    write_jsonl(folder / "rm-metrics.jsonl", [
        {"command": "train-rm", "step": 0, "by_file": {}},
        {"command": "train-rm", "step": 4, "heldout_pairs": 2, "heldout_accuracy": 0.5,
         "heldout_mean_margin": 0.25, "heldout_by_file": {"prefs.jsonl": {
             "heldout_pairs": 2, "heldout_accuracy": 0.5, "heldout_mean_margin": 0.25}},
         "heldout_scores": [[1.0, 0.5], [0.2, 0.4]]}])
    write_jsonl(folder / "ppo-metrics.jsonl", [
        {"command": "train-ppo", "step": s, "objective/scores": 0.1 * s, "objective/kl": 0.01 * s,
         "ended_fraction": 0.5} for s in (1, 2, 3)])
    write_jsonl(folder / "answers-base.jsonl", [{"id": "e1", "prompt": "Held out?", "response": "Base says."}])
    write_jsonl(folder / "answers-ppo.jsonl", [{"id": "e1", "prompt": "Held out?", "response": "RL says."}])
    write_jsonl(folder / "judgments.jsonl", [{"dimension": "harmlessness", "id": "e1", "a": "base",
                                              "b": "rl-cai", "p_a": 0.1, "agree": True, "details": []}])
    (folder / "eval.json").write_text(json.dumps({
        "systems": ["base", "rl-cai"],
        "files": {"base": str(folder / "answers-base.jsonl"), "rl-cai": str(folder / "answers-ppo.jsonl")},
        "pairs": [{"a": "base", "b": "rl-cai", "n": 1,
                   "harmlessness": {"n": 1, "win_rate": 0.1234, "ci": [0.05, 0.2], "order_agreement": 1.0},
                   "helpfulness": {"n": 1, "win_rate": 0.6, "ci": None, "order_agreement": 1.0}}],
        "elo": {"reference": "base", "harmlessness": {"base": {"elo": 0.0, "ci": None},
                                                      "rl-cai": {"elo": 381.7, "ci": [300.0, 400.0]}},
                "helpfulness": {"base": {"elo": 0.0, "ci": None}, "rl-cai": {"elo": -70.4, "ci": None}}}}))
    return folder


def section_ids(page: str) -> list[str]:
    return re.findall(r'<section id="([a-z]+)">', page)


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def open_in_browser(page: Path, folder: Path) -> tuple[str, str, Path]:
    """The page's DOM after its script ran, chromium's console output, and a screenshot."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--window-size=1000,1400", "--enable-logging=stderr", "--v=0",
            f"--user-data-dir={folder / 'profile'}"]
    dom = subprocess.run([*args, "--dump-dom", page.resolve().as_uri()], capture_output=True,
                         text=True, timeout=120)
    shot = folder / "page.png"
    subprocess.run([*args, f"--screenshot={shot}", page.resolve().as_uri()], capture_output=True,
                   text=True, timeout=120)
    return dom.stdout, dom.stderr, shot


def check_rendered(page: Path, folder: Path, sections: tuple[str, ...] = SECTIONS) -> None:
    """The page rendered in a real browser: its script ran without errors, every section is
    there, each plot has a size, and the screenshot is not a blank page."""
    dom, console, shot = open_in_browser(page, folder)
    assert 'data-script="ran"' in dom, console[-2000:]
    errors = [line for line in console.splitlines() if "Uncaught" in line or "CONSOLE(" in line]
    assert not errors, errors
    for key in sections:
        assert f'<section id="{key}">' in dom, key
    sizes = re.search(r'data-plot-sizes="([^"]*)"', dom)[1].split()
    assert sizes, "no plot on the page"
    for size in sizes:
        width, height = (int(v) for v in size.split("x"))
        assert width > 100 and height > 50, sizes
    from PIL import Image

    image = Image.open(shot).convert("L")
    dark = sum(image.histogram()[:200])
    assert dark > 0.01 * image.width * image.height, "the screenshot is almost blank"
