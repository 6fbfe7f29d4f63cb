from __future__ import annotations

import os
from typing import Annotated

import typer

from caitool import console, prompt_requests
from caitool.commands._flags import ModelFlags, RayFlags, SamplingFlags, StreamFlags, command, run_records
from caitool.errors import CaitoolError
from caitool.io.jsonl import iter_records
from caitool.io.output import check_outputs
from caitool.io.stream import StreamStats, parse_shard, skipper
from caitool.near_duplicates import DuplicateIndex
from caitool.schema import check_prompt
from caitool.stages import red_team, supervised

NAME = "red-team"
EXAMPLE = """    caitool red-team examples/red_team.jsonl -n 500 --by-category > generated.jsonl
    cat examples/red_team.jsonl generated.jsonl | caitool critique | caitool revise > round1.jsonl
    caitool red-team --kind helpful examples/helpful.jsonl -n 200 -o helpful-more.jsonl --resume"""

Seeds = Annotated[list[str] | None, typer.Argument(
    help="Seed prompt files (JSONL prompt records, any caitool reads), or - for stdin.",
    show_default="-")]


@command
def command(
    seeds: Seeds = None,
    num_prompts: Annotated[int, typer.Option("-n", "--num-prompts",
                                             help="New prompts to write (after the filters).")] = 100,
    kind: Annotated[str, typer.Option("--kind", help="What to ask for: red-team (prompts that try "
                                      "to draw out harmful help) or helpful (everyday requests).")] = "red-team",
    request: Annotated[str | None, typer.Option(
        "--request", help="A YAML file with the request's own text instead of --kind's, of the "
                          "built-in ones' shape (constitutions/requests/): description (what the "
                          "examples are), instruction (the chat format's ask), label (each "
                          "example's label in the raw format), name.")] = None,
    shots: Annotated[int, typer.Option("--shots", help="Seed prompts shown per request.")] = 4,
    by_category: Annotated[bool, typer.Option(
        "--by-category", help="Take each request's seeds from one 'category' of the seeds, "
                              "the categories in turn, so that each is as well represented.")] = False,
    near_duplicates: Annotated[float, typer.Option(
        "--near-duplicates", help="Drop a new prompt whose character 5-grams overlap a seed's or "
                                  "an earlier output's this much (Jaccard similarity, MinHash); "
                                  "1 drops exact duplicates only.")] = 0.7,
    min_words: Annotated[int, typer.Option("--min-words", help="Drop shorter new prompts.")] = 3,
    max_words: Annotated[int, typer.Option("--max-words", help="Drop longer new prompts.")] = 120,
    exclude: Annotated[list[str] | None, typer.Option(
        "--exclude", help="Prompt records that no new prompt may repeat or come near, never "
                          "shown to the model: held-out evaluation prompts (repeatable).")] = None,
    max_requests: Annotated[int | None, typer.Option(
        "--max-requests", help="Stop after this many requests even if fewer than -n prompts "
                               "passed the filters (default: 4 x -n).")] = None,
    stream_flags: StreamFlags = None,
    model: ModelFlags = None,
    sampling: SamplingFlags = None,
    scale: RayFlags = None,
) -> None:
    """Grow a prompt set by few-shot prompting: show the model a few seed prompts, ask for one
    more, keep the replies that are new prompts.

    Each request samples --shots seeds (seeded by --seed); the model's reply is cleaned and
    dropped if it is empty, cut off, an answer or a refusal rather than a prompt, too short or
    too long, or an exact or near duplicate of a seed or of an earlier output. Requests go on
    until -n prompts are kept (or --max-requests are made). Each new record has 'id',
    'prompt', 'seeds' (the ids it was shown), 'category' with --by-category, and its
    provenance. The summary on stderr counts every filter. --dry-run writes the requests.
    --format auto means raw: the seeds as a list for the model to continue.
    """
    if num_prompts < 1:
        raise CaitoolError("-n/--num-prompts must be at least 1")
    if shots < 1:
        raise CaitoolError("--shots must be at least 1")
    if not 0 < near_duplicates <= 1:
        raise CaitoolError("--near-duplicates must be in (0, 1]")
    if min_words < 1 or max_words < min_words:
        raise CaitoolError("need 1 <= --min-words <= --max-words")
    limit = max_requests if max_requests is not None else 4 * num_prompts
    if limit < 1:
        raise CaitoolError("--max-requests must be at least 1")
    paths, held_out = seeds or ["-"], exclude or []
    if [*paths, *held_out].count("-") > 1:
        raise CaitoolError("stdin (-) can be read once only")
    check_outputs([("-o", stream_flags.output)], [("", p) for p in paths]
                  + [("--exclude", p) for p in held_out] + [("--request", request)])
    if request is None and kind not in prompt_requests.builtin_names():
        raise CaitoolError(f"--kind must be one of {', '.join(prompt_requests.builtin_names())}, "
                           f"not '{kind}'")
    grow_request = prompt_requests.load_file(request) if request else prompt_requests.load(kind)
    # auto means raw here: continuing a list of examples is what any model does well (the
    # paper's way, with base models); the built-in 135M model, asked in chat, mostly talks.
    params, fmt = sampling.params(), "raw" if model.format == "auto" else model.format

    skipped = skipper(NAME, StreamStats())
    def read(files: list[str]) -> list[dict]:
        return [r for path in files
                for _, r in iter_records(path, check_prompt, stream_flags.skip_invalid, skipped)]

    records = read(paths)
    plan = red_team.Plan.from_records(records, shots=shots, seed=params.seed or 0,
                                      by_category=by_category, request=grow_request)
    limits = red_team.Limits(min_words, max_words, params.max_new_tokens)
    target = _share(num_prompts, stream_flags.shard)

    sieve = None
    if not model.dry_run:
        sieve = red_team.Sieve(target, DuplicateIndex(near_duplicates, seed=params.seed or 0))
        sieve.add_seeds(plan)
        sieve.add_held_out(read(held_out))
        output = stream_flags.output
        if stream_flags.resume and output not in (None, "-") and os.path.exists(output):
            sieve.add_written([r for _, r in iter_records(output)])

    # Dry runs write the requests: as many as would be made for -n if none were dropped.
    run_records(NAME, None, model=model, stream_flags=stream_flags, scale=scale,
                step=supervised.step(red_team.grow, params, fmt, plan, limits), validate=None,
                describe="growing prompts", finish=sieve,
                records=red_team.requests(plan, sieve, limit if sieve else target))
    if sieve is not None:
        console.info(NAME, sieve.summary())
        shortfall = sieve.shortfall(limit)
        if shortfall:
            console.warn(NAME, shortfall)


def _share(total: int, shard: str | None) -> int:
    """This shard's part of ``total`` (the parts add up to it)."""
    part = parse_shard(shard)
    if part is None:
        return total
    index, count = part
    return total // count + (1 if index <= total % count else 0)
