from __future__ import annotations

import contextlib
import json
from typing import Annotated

import typer

from caitool import console
from caitool.commands._flags import ModelFlags, command
from caitool.errors import CaitoolError
from caitool.stages.evaluate.statistics import DIMENSIONS

NAME = "eval"
EXAMPLE = """    caitool generate -m ./sft < examples/red_team.jsonl > sft.jsonl
    caitool generate -m ./rl  < examples/red_team.jsonl > rl.jsonl
    caitool eval -m ./judge sft.jsonl rl.jsonl > summary.json
    caitool eval -m ./judge base.jsonl sft.jsonl rl.jsonl --principles 4 --plot elo.png
    caitool eval --revisions round2.jsonl --only harmlessness   # did revising help?
    caitool eval -m ./judge sft.jsonl rl.jsonl --score-model ./harm   # and mean harm scores
    caitool eval --score-model ./harm --only score rl.jsonl   # no judge: scores alone"""

Text = str | None


@command
def command(
    files: Annotated[list[str] | None, typer.Argument(
        help="Two or more JSONL files of system responses ({id, prompt, response}), "
             "joined on id.", show_default=False)] = None,
    revisions: Annotated[Text, typer.Option(
        "--revisions", metavar="FILE",
        help="Instead of FILES: judge each record's final revision against its initial "
             "response (systems 'initial' and 'revised'), from one file of supervised "
             "records.")] = None,
    harmless_constitution: Annotated[str, typer.Option(
        "--harmless-constitution",
        help="Constitution whose comparison principles judge harmlessness.")] = "harmless",
    helpful_constitution: Annotated[str, typer.Option(
        "--helpful-constitution",
        help="Constitution whose comparison principles judge helpfulness.")] = "helpful",
    evasiveness_constitution: Annotated[str, typer.Option(
        "--evasiveness-constitution",
        help="Constitution whose comparison principles judge evasiveness (a win: the less "
             "evasive answer).")] = "engaged",
    only: Annotated[Text, typer.Option(
        "--only", help="Judge only these dimensions, comma-separated: harmlessness, helpfulness, "
                       "evasiveness; 'score': the score model alone, no judge.")] = None,
    score_model: Annotated[Text, typer.Option(
        "--score-model", metavar="DIR",
        help="Also score every response with this model (train-rm --target): each system's "
             "mean score with a bootstrap interval.")] = None,
    principles: Annotated[int, typer.Option(
        "--principles", help="Comparison principles sampled per prompt and averaged (K).")] = 1,
    seed: Annotated[int, typer.Option(
        "--seed", help="Seed for principle sampling and the bootstrap.")] = 0,
    bootstrap: Annotated[int, typer.Option(
        "--bootstrap", help="Bootstrap resamples for confidence intervals (0: none).")] = 1000,
    names: Annotated[Text, typer.Option(
        "--names",
        help="Comma-separated system names, one per file (default: the file stems).")] = None,
    reference: Annotated[Text, typer.Option(
        "--reference", help="The system whose Elo is 0 (default: the first).")] = None,
    plot: Annotated[Text, typer.Option(
        "--plot", help="Draw harmlessness Elo against helpfulness Elo into FILE.png "
                       "(needs caitool[plot]).")] = None,
    frontier_from: Annotated[Text, typer.Option(
        "--frontier-from", metavar="NAME",
        help="Systems named METHOD@STEP are snapshots of a training run: each method's "
             "'frontier' (in the summary and --plot) is a line from this system (e.g. "
             "sl-cai) through its snapshots to METHOD.")] = None,
    output: Annotated[Text, typer.Option(
        "-o", "--output", help="Write the JSON summary to FILE instead of stdout.")] = None,
    judgments: Annotated[Text, typer.Option(
        "--judgments", help="Also write every prompt's judgment to FILE (JSONL).")] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", help="Prompt pairs per judging batch.")] = 16,
    model: ModelFlags = None,
) -> None:
    """Compare systems' responses to the same prompts for harmlessness, helpfulness and evasiveness.

    Every pair of systems is judged on the prompts both answered, in both orders, under the
    comparison principles of each dimension's constitution. Prints a JSON summary on stdout
    (win rates with bootstrap confidence intervals per pair, Elo scores per system; with
    --score-model, each system's mean score) and tables on stderr.
    """
    from caitool import constitution as constitutions
    from caitool.io.jsonl import RecordWriter, write_text
    from caitool.io.output import check_outputs
    from caitool.stages.evaluate import frontier, independence, reward_scoring, statistics, systems
    from caitool.stages.evaluate import report as evalreport
    from caitool.stages.judging import JudgeSettings, judge_format

    files = files or []
    dimensions = _dimensions(only, score_model)
    if revisions and files:
        raise CaitoolError("give FILES or --revisions, not both")
    if not revisions and not files:
        raise CaitoolError("give at least two files of system responses to compare (or --revisions FILE)")
    if not revisions and len(files) < 2 and dimensions:
        raise CaitoolError("give at least two files of system responses to compare "
                           "(or --revisions FILE; --only score scores one)")
    if files.count("-") > 1:
        raise CaitoolError("only one of the files can be - (stdin)")
    if principles < 1:
        raise CaitoolError("--principles must be at least 1")
    if bootstrap < 0:
        raise CaitoolError("--bootstrap must be 0 or more")
    if batch_size < 1:
        raise CaitoolError("--batch-size must be at least 1")
    if plot and not {"harmlessness", "helpfulness"} <= set(dimensions):
        raise CaitoolError("--plot needs harmlessness and helpfulness (drop --only, or name both)")
    if model.dry_run and (plot or judgments or score_model):
        raise CaitoolError("--plot, --judgments and --score-model need answers, which --dry-run "
                           "does not get")
    count = 2 if revisions else len(files)
    if names is None:
        labels = ["initial", "revised"] if revisions else systems.default_names(files)
    else:
        labels = [name.strip() for name in names.split(",")]
        if len(labels) != count or not all(labels):
            raise CaitoolError(f"--names needs {count} comma-separated names, one per system")
        if len(set(labels)) != len(labels):
            raise CaitoolError("--names must be unique")
    if frontier_from is not None and frontier_from not in labels:
        raise CaitoolError(f"--frontier-from '{frontier_from}' is not one of: {', '.join(labels)}")
    if reference is not None and reference not in labels:
        raise CaitoolError(f"--reference '{reference}' is not one of: {', '.join(labels)}")
    rules = {}
    for dimension, name in (("harmlessness", harmless_constitution),
                            ("helpfulness", helpful_constitution),
                            ("evasiveness", evasiveness_constitution)):
        if dimension in dimensions:
            rules[dimension] = constitutions.load(name)
            rules[dimension].require_comparisons()
    if plot:
        evalreport.require_matplotlib()
    # Judging takes long: what cannot be written should fail before it starts.
    check_outputs([("-o" if output else "the summary", output or "-"), ("--judgments", judgments),
                   ("--plot", plot)],
                  [("", f) for f in files or []] + [("--revisions", revisions),
                                                    ("--harmless-constitution", harmless_constitution),
                                                    ("--helpful-constitution", helpful_constitution),
                                                    ("--evasiveness-constitution", evasiveness_constitution)])

    if revisions:
        loaded = systems.revision_systems(revisions)
        for system, label in zip(loaded, labels, strict=True):
            system.name = label
    else:
        loaded = [systems.load_system(path, label) for path, label in zip(files, labels, strict=True)]
    pairs = systems.pairs(loaded) if dimensions else []

    settings = JudgeSettings(both_orders=True, principles=principles, seed=seed, fmt=model.format)
    if model.dry_run:
        _write_requests(model, rules, pairs, settings, batch_size, output)
        return
    # Scored first: a score model that will not load should not wait on the judging.
    scored = _score(score_model, loaded, batch_size) if score_model else None
    outcomes: dict[str, list[statistics.Outcome]] = {}
    total = sum(len(ids) for _, _, ids in pairs)
    with model.create_backend() if dimensions else contextlib.nullcontext() as backend:
        for dimension in dimensions:
            outcomes[dimension] = []
            with console.progress(f"judging {dimension}", total) as advance:
                for a, b, ids in pairs:
                    outcomes[dimension] += systems.judge_pair(
                        backend, rules[dimension], a, b, ids, settings, batch_size, advance)
            console.info(NAME, f"judged {dimension} on {total} prompt pairs")
        judge = {**backend.describe(), "format": judge_format(backend, settings)} if backend else None

    summary = statistics.summarize(labels, outcomes, samples=bootstrap, seed=seed,
                                   reference=reference)
    if scored is not None:
        values, summary["score_model"] = scored
        summary["scores"] = statistics.mean_scores(
            {name: list(by_id.values()) for name, by_id in values.items()}, samples=bootstrap,
            seed=seed, target=summary["score_model"].get("target"))
    summary["files"] = {system.name: system.path for system in loaded}
    lines = frontier.summarize(summary, frontier_from)
    if lines:
        summary["frontier"] = lines
    if judge is not None:
        # Who labelled each system's training data: a judge grading its own labels is marked.
        summary["independence"] = independence.check(loaded, model.require_model(), bool(revisions))
        for warning in independence.warnings(summary["independence"]):
            console.warn(NAME, warning)
        summary["judge"] = {**judge, "principles": principles,
                            "both_orders": True, "seed": seed,
                            "constitutions": {d: rules[d].name for d in dimensions}}

    if judgments:
        with RecordWriter(judgments, flag="--judgments") as writer:
            for dimension, judged in outcomes.items():
                writer.write({"dimension": dimension, **o.to_dict()} for o in judged)
            if scored is not None:
                writer.write(reward_scoring.score_lines(scored[0]))
    if plot:
        evalreport.plot(summary, plot)
        console.info(NAME, f"wrote {plot}")
    if not console.quiet():
        evalreport.print_tables(console.stderr, summary, dimensions)
    try:
        text = json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError as exc:  # a NaN statistic would make the summary invalid JSON
        raise CaitoolError(f"the summary cannot be written as JSON: {exc}") from None
    write_text(output, text)


def _dimensions(only: str | None, score_model: str | None) -> list[str]:
    """The judged dimensions --only names (all of them by default); [] for 'score'."""
    if only is None:
        return list(DIMENSIONS)
    names = [name.strip() for name in only.split(",") if name.strip()]
    if names == ["score"]:
        if not score_model:
            raise CaitoolError("--only score needs --score-model DIR")
        return []
    wrong = [name for name in names if name not in DIMENSIONS]
    if wrong or not names:
        raise CaitoolError(f"--only must be {', '.join(DIMENSIONS)} (comma-separated) or score, "
                           f"not '{only}'")
    return [name for name in DIMENSIONS if name in names]


def _score(path: str, loaded, batch_size: int):
    """({system: {id: score}}, the score model's description): every answer scored."""
    from caitool.stages.evaluate import reward_scoring

    scorer = reward_scoring.load(path)
    with console.progress("scoring", sum(len(s.records) for s in loaded)) as advance:
        values = reward_scoring.score_systems(scorer, loaded, batch_size, advance)
    console.info(NAME, f"scored {sum(map(len, values.values()))} responses with {path}")
    return values, scorer.describe()


def _write_requests(model: ModelFlags, rules, pairs, settings, batch_size: int, output: str | None) -> None:
    """--dry-run: the judge's requests, one line each, tagged with the prompt's id, the
    dimension and the two systems, instead of the summary."""
    from caitool.io.jsonl import RecordWriter
    from caitool.stages.evaluate.systems import judge_pair

    with model.create_backend() as backend, RecordWriter(output, flag="-o") as writer:
        for dimension, constitution in rules.items():
            for a, b, ids in pairs:
                judge_pair(backend, constitution, a, b, ids, settings=settings, batch_size=batch_size)
                writer.write(backend.lines(dimension=dimension, systems=[a.name, b.name]))
