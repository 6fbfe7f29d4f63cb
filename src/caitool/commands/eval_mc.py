from __future__ import annotations

import json
from typing import Annotated

import typer

from caitool import console
from caitool.commands._flags import ModelFlags, command
from caitool.errors import CaitoolError

NAME = "eval-mc"
EXAMPLE = """    caitool eval-mc examples/judge-eval.jsonl -m ./judge > accuracy.json
    caitool eval-mc hhh.jsonl harmless.jsonl -m Qwen/Qwen2.5-7B-Instruct --as-chat
    caitool eval-mc examples/judge-eval.jsonl --reward-model ./rm -o rm-accuracy.json"""

Text = str | None


@command
def command(
    files: Annotated[list[str], typer.Argument(
        help="JSONL files of multiple-choice rows ({prompt, corrects, incorrects}); - for "
             "stdin.", show_default=False)],
    as_chat: Annotated[bool, typer.Option(
        "--as-chat", help="Ask a chat model: the question as the user's turn and its last line "
                          "(the answer cue) opening the reply. Default: the prompt as it is.")] = False,
    reward_model: Annotated[Text, typer.Option(
        "-r", "--reward-model", metavar="RM",
        help="Score the rows' text_correct/text_incorrect transcripts with this reward model "
             "(from train-rm) instead of a judge; rows without them are skipped. --format "
             "then says how it reads them (as it was trained).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the bootstrap.")] = 0,
    bootstrap: Annotated[int, typer.Option(
        "--bootstrap", help="Bootstrap resamples for confidence intervals (0: none).")] = 1000,
    output: Annotated[Text, typer.Option(
        "-o", "--output", help="Write the JSON summary to FILE instead of stdout.")] = None,
    rows: Annotated[Text, typer.Option(
        "--rows", metavar="FILE",
        help="Also write every row's scores and credit to FILE (JSONL).")] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", help="Rows per scoring batch.")] = 16,
    skip_invalid: Annotated[bool, typer.Option(
        "--skip-invalid", help="Report and skip bad input lines instead of stopping.")] = False,
    min_accuracy: Annotated[float | None, typer.Option(
        "--min-accuracy", help="Exit 1 (after writing the summary) when the overall accuracy "
                               "is below this, e.g. 0.6: a judge not fit to label stops a "
                               "pipeline before its labels are used.", show_default=False)] = None,
    model: ModelFlags = None,
) -> None:
    """A judge's accuracy on multiple-choice evaluations (the paper's released format).

    Each row's options are scored by their log-probability after its prompt; the row is right
    when a correct option scores highest (k options tied for the top earn the correct share
    over k). Prints, per file, the rows scored and the accuracy with a bootstrap confidence
    interval: JSON on stdout, a table on stderr.
    """
    from caitool.io.jsonl import RecordWriter, check_outputs, write_text
    from caitool.stages.evaluate import multiple_choice as mc

    if files.count("-") > 1:
        raise CaitoolError("only one of the files can be - (stdin)")
    if bootstrap < 0:
        raise CaitoolError("--bootstrap must be 0 or more")
    if batch_size < 1:
        raise CaitoolError("--batch-size must be at least 1")
    if min_accuracy is not None and not 0 <= min_accuracy <= 1:
        raise CaitoolError("--min-accuracy must be in [0, 1]")
    if reward_model and (model.model or as_chat):
        raise CaitoolError("--reward-model scores the rows instead of a judge: drop "
                           f"{'--as-chat' if as_chat else '-m/--model (or CAITOOL_MODEL)'}")
    if not reward_model and model.format == "chat":
        raise CaitoolError("a judge's prompts are used as given; to ask it as a chat, use --as-chat")

    if model.dry_run and (reward_model or rows):
        raise CaitoolError(f"{'--reward-model' if reward_model else '--rows'} needs scores, "
                           "which --dry-run does not get")

    check_outputs([("-o" if output else "the summary", output or "-"), ("--rows", rows)],
                  [("", path) for path in files])

    def skipped(error) -> None:
        console.warn(NAME, f"skipped {error}")

    loaded = [mc.read_file(path, skip_invalid, skipped) for path in files]
    total = mc.rows_to_score(loaded, bool(reward_model))
    if not total:
        wanted = "'text_correct' and 'text_incorrect'" if reward_model else "'prompt' and options"
        raise CaitoolError(f"no row to score: none carries {wanted}")
    if model.dry_run:
        _write_requests(model, loaded, as_chat, batch_size, output)
        return

    methods: set[str] = set()
    if reward_model:
        from caitool.stages.evaluate import reward_scoring

        rm = reward_scoring.load(reward_model, model.format)
    with console.progress("scoring", total) as advance:
        if reward_model:
            results = [reward_scoring.score_with_reward_model(rm, f, batch_size, advance)
                       for f in loaded]
            about = {"reward_model": rm.describe()}
        else:
            with model.create_backend() as backend:
                _check_chat(backend, as_chat)
                results = [mc.score_with_judge(backend, f, as_chat, batch_size, advance, methods)
                           for f in loaded]
                about = {"judge": {**backend.describe(), "prompts": "chat" if as_chat else "raw",
                                   "method": "sampled" if "sampled" in methods else "logprobs"}}

    summary = {"mode": "reward-model" if reward_model else "judge",
               **mc.summarize(results, samples=bootstrap, seed=seed), **about}
    for result in results:
        if result.skipped:
            console.warn(NAME, f"{result.path}: {result.skipped} row(s) without "
                               f"{'transcripts' if reward_model else 'options'} skipped")
        if result.failed:
            console.warn(NAME, f"{result.path}: {result.failed} row(s) could not be scored")
    if rows:
        with RecordWriter(rows) as writer:
            for result in results:
                writer.write(s.to_dict(result.path) for s in result.scored)
    if not console.quiet():
        title = "Reward model accuracy" if reward_model else "Judge accuracy"
        console.stderr.print(mc.table(summary, title))
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    write_text(output, text)
    _verdict(summary, reward_model is not None, min_accuracy)


def _verdict(summary: dict, reward_model: bool, min_accuracy: float | None) -> None:
    """Say plainly when the scorer is guessing, and stop when it is below the bar."""
    from caitool.stages.evaluate import multiple_choice as mc

    who = "the reward model" if reward_model else "the judge"
    overall = summary.get("overall") or summary["files"][0]
    for entry in [*summary["files"], *([summary["overall"]] if "overall" in summary else [])]:
        if mc.at_chance(entry):
            where = entry.get("file", "all files")
            interval = (f" (interval {100 * entry['ci'][0]:.0f}-{100 * entry['ci'][1]:.0f}%)"
                        if entry.get("ci") else "")
            console.warn(NAME, f"{who} is at chance on {where}: {100 * entry['accuracy']:.0f}%"
                         f"{interval} against {100 * entry['chance']:.0f}% by guessing; labels "
                         f"from it are no better than a coin, so do not trust them")
    if min_accuracy is not None and (overall.get("accuracy") or 0) < min_accuracy:
        raise CaitoolError(f"{who}'s accuracy {100 * (overall.get('accuracy') or 0):.1f}% is below "
                           f"--min-accuracy {100 * min_accuracy:g}%: stopping before its labels "
                           "are used")


def _check_chat(backend, as_chat: bool) -> None:
    if as_chat and not backend.has_chat_template():
        raise CaitoolError(f"model '{backend.model}' has no chat template, so --as-chat cannot "
                           "ask it as a chat")


def _write_requests(model: ModelFlags, loaded, as_chat: bool, batch_size: int,
                    output: str | None) -> None:
    """--dry-run: the judge's requests, one line each, tagged with the row's file and line,
    instead of the summary."""
    from caitool.io.jsonl import RecordWriter
    from caitool.stages.evaluate.multiple_choice import score_with_judge

    with model.create_backend() as backend, RecordWriter(output) as writer:
        _check_chat(backend, as_chat)
        for file in loaded:
            score_with_judge(backend, file, as_chat, batch_size)
            writer.write(backend.lines(file=file.path))
