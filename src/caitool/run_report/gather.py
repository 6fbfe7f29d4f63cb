"""Each section's data from a run directory: which files it reads, what it found in them.

A section is ``None`` when its data is not there (a run cut short, a stage never run), and
marked incomplete when one of its files had a problem.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from caitool import lineage
from caitool.run_report import numbers
from caitool.run_report.markup import prompt_text
from caitool.run_report.reading import Problems, RunDir
from caitool.view import as_text

Record = dict[str, Any]
PREFERENCE_FILES = {"prefs.jsonl": "harmlessness", "helpful-prefs.jsonl": "helpfulness",
                    "human-helpful-prefs.jsonl": "helpfulness (people)"}


@dataclass
class Section:
    files: list[str]
    data: dict[str, Any] = field(default_factory=dict)


def _first(run: RunDir, name: str) -> Record | None:
    for record in run.records(name):
        return record
    return None


def _kind_check(run: RunDir, name: str, other: int, expected: str) -> None:
    if other:
        run.wrong_kind(name, other, expected)


def run_section(run: RunDir) -> Section:
    """Models in each role, constitutions, settings, the provenance chain, timings."""
    roles: dict[str, str] = {}
    settings: dict[str, Any] = {}
    files = []
    opening = f"round{run.rounds()[-1]}.jsonl" if run.rounds() else "revised.jsonl"
    record = _first(run, opening) if run.file(opening) else None
    if record is not None:
        files.append(opening)
        provenance = record.get("provenance") if isinstance(record.get("provenance"), dict) else {}
        for command, role in (("generate", "writes the first answers"),
                              ("critique", "critiques"), ("revise", "revises")):
            info = provenance.get(command)
            if isinstance(info, dict):
                roles[role] = str(info.get("model"))
                settings[command] = {k: v for k, v in info.items() if k != "model"}
    trained: list[str] = []
    for name, role in (("sft", "SL-CAI base (fine-tuned)"), *((m, f"RL ({m})") for m in
                                                              ("ppo", "rloo", "grpo", "dpo")),
                       ("rm", "reward model base")):
        summary = lineage.training_summary(str(run.path / name)) if run.has(name) else None
        if summary:
            roles[role] = str(summary.get("base_model"))
            trained.append(str(run.path / name))
            settings[f"train ({name})"] = {k: summary[k] for k in (
                "format", "examples", "pairs", "prompts", "lora", "all_rounds", "response_length")
                if k in summary and not isinstance(summary[k], (dict, list))}
    for name in PREFERENCE_FILES:
        record = _first(run, name) if run.file(name) else None
        info = (record or {}).get("provenance", {}).get("compare") if isinstance(
            (record or {}).get("provenance"), dict) else None
        if isinstance(info, dict):
            roles[f"judge ({info.get('constitution', '?')})"] = str(info.get("model"))
    evaluation = run.json("eval.json") if run.file("eval.json") else None
    if evaluation and isinstance(evaluation.get("independence"), dict):
        roles["evaluator"] = str(evaluation["independence"].get("evaluator"))
    # The chain behind the run's last model: the RL model, else the SFT model.
    last = [m for m in trained if not m.endswith(("/rm", "/sft"))] or [m for m in trained
                                                                        if m.endswith("/sft")]
    chain = lineage.follow(last[:1]).to_dict() if last else None
    timeline = []
    previous = None
    finished_at = run.finished()
    # The clock time alone when the run took one day (the usual case: narrower tables).
    days = {time.strftime("%Y-%m-%d", time.gmtime(t)) for _, t in finished_at}
    shown = "%H:%M:%S" if len(days) == 1 else "%Y-%m-%d %H:%M:%S"
    for name, finished in finished_at:
        timeline.append((name, time.strftime(shown, time.gmtime(finished)),
                         None if previous is None else finished - previous))
        previous = finished
    runtimes = {}
    for name in sorted(n for n in run.names if n.endswith("-metrics.jsonl")):
        for line in run.metrics(name):
            if isinstance(line.get("train_runtime"), (int, float)):
                runtimes[name.removesuffix("-metrics.jsonl")] = float(line["train_runtime"])
    return Section(files, {"roles": roles, "settings": settings, "chain": chain,
                           "timeline": timeline, "runtimes": runtimes,
                           "day": next(iter(days)) if len(days) == 1 else None})


def supervised_section(run: RunDir) -> Section | None:
    rounds = [r for r in run.rounds() if r > 0]
    name = f"round{rounds[-1]}.jsonl" if rounds else "revised.jsonl"
    if not run.file(name):
        return None
    stats = numbers.supervised(run.records(name))
    _kind_check(run, name, stats.other, "supervised records (initial_response and revisions)")
    if not stats.records:
        return None
    return Section([name], {"stats": stats, "file": name})


def judge_section(run: RunDir) -> Section | None:
    judged, files = {}, []
    for name, label in PREFERENCE_FILES.items():
        if run.file(name):
            stats = numbers.judge(run.records(name))
            _kind_check(run, name, stats.other, "preference records (chosen, rejected, p_chosen)")
            files.append(name)
            if stats.pairs:
                judged[label] = stats
    accuracy = run.json("judge-accuracy.json") if run.file("judge-accuracy.json") else None
    if accuracy is not None:
        files.append("judge-accuracy.json")
        if not isinstance(accuracy.get("files"), list):
            run.wrong_kind("judge-accuracy.json", 1, "an eval-mc summary")
            accuracy = None
    calibration = None
    if run.file("judge-rows.jsonl"):
        files.append("judge-rows.jsonl")
        calibration = numbers.calibration(run.records("judge-rows.jsonl"))
        _kind_check(run, "judge-rows.jsonl", calibration.other, "eval-mc rows with scores")
    if not judged and accuracy is None and not (calibration and calibration.rows):
        return None
    return Section(files, {"judged": judged, "accuracy": accuracy, "calibration": calibration})


def reward_section(run: RunDir) -> Section | None:
    if not run.file("rm-metrics.jsonl"):
        return None
    heldout = numbers.reward_model(run.metrics("rm-metrics.jsonl"))
    if heldout is None:
        run.problems.add(f"{run.path / 'rm-metrics.jsonl'}: no held-out line (train-rm stopped "
                         "before the end, or this is not its metrics file)", "rm-metrics.jsonl")
        return Section(["rm-metrics.jsonl"], {"heldout": None})
    return Section(["rm-metrics.jsonl"], {"heldout": heldout,
                                          "scores": numbers.score_pairs(heldout)})


def rl_section(run: RunDir) -> Section | None:
    method = run.rl_method()
    name = f"{method}-metrics.jsonl" if method else None
    if name is None or not run.file(name):
        return None
    lines = run.metrics(name)
    series = numbers.rl_series(lines)
    if not series:
        run.problems.add(f"{run.path / name}: no step with a reward, KL or loss", name)
    return Section([name], {"method": method, "series": series,
                            "ended": numbers.ended_share(lines)})


def evaluation_section(run: RunDir) -> Section | None:
    if not run.file("eval.json"):
        return None
    summary = run.json("eval.json")
    if summary is None:
        return Section(["eval.json"], {"summary": None})
    if not isinstance(summary.get("systems"), list) or not isinstance(summary.get("pairs"), list):
        run.wrong_kind("eval.json", 1, "an eval summary (systems, pairs)")
        return Section(["eval.json"], {"summary": None})
    files = ["eval.json"]
    examples: list[Record] = []
    if run.file("judgments.jsonl"):
        files.append("judgments.jsonl")
        examples = _with_answers(run, numbers.disagreements(run.records("judgments.jsonl")),
                                 summary.get("files") or {})
    return Section(files, {"summary": summary, "examples": examples})


def _with_answers(run: RunDir, picked: list[Record], files: dict[str, Any]) -> list[Record]:
    """The picked judgments with each system's prompt and answer, read from its answers file
    (only the picked ids are kept)."""
    wanted = {str(p.get("id")) for p in picked}
    answers: dict[tuple[str, str], str] = {}
    prompts: dict[str, str] = {}
    for system, path in files.items():
        name = str(path).rsplit("/", 1)[-1]
        if not run.file(name):
            continue
        for record in run.records(name):
            key = str(record.get("id"))
            if key in wanted:
                answers[(system, key)] = as_text(record.get("response", ""))
                prompts.setdefault(key, prompt_text(record))
    return [{**p, "prompt": prompts.get(str(p["id"]), ""),
             "answer_a": answers.get((p["a"], str(p["id"])), ""),
             "answer_b": answers.get((p["b"], str(p["id"])), "")} for p in picked]


def gather(path: str, problems: Problems) -> tuple[RunDir, dict[str, Section | None]]:
    run = RunDir(path, problems)
    sections = {
        "run": run_section(run),
        "supervised": supervised_section(run),
        "judge": judge_section(run),
        "reward": reward_section(run),
        "rl": rl_section(run),
        "evaluation": evaluation_section(run),
    }
    if not any(sections[key] for key in sections if key != "run") and not sections["run"].files:
        problems.add(f"{run.path}: holds none of the files a caitool run writes, or they are "
                     "empty (round*.jsonl, prefs.jsonl, *-metrics.jsonl, eval.json...); the "
                     "report is empty")
    return run, sections
