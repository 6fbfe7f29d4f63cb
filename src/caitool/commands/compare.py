from __future__ import annotations

from typing import Annotated

import typer

from caitool import constitution as constitutions
from caitool import stream
from caitool.commands._common import Constitution, Input
from caitool.errors import CaitoolError
from caitool.jsonl import done_ids
from caitool.judge import JudgeSettings, parse_clamp
from caitool.options import ModelFlags, StreamFlags, command
from caitool.preferences import PAIRINGS, LabelOptions, check_for_compare, compare

NAME = "compare"
EXAMPLE = (
    "    caitool generate -m ./sft -n 2 < prompts.jsonl | caitool compare -m ./judge > p.jsonl\n"
    "    caitool compare -m ./judge --principles 4 --cot --drop-ties pairs.jsonl -o prefs.jsonl"
)


@command
def command(
    input: Input = "-",
    constitution: Constitution = "harmless",
    one_order: Annotated[bool, typer.Option(
        "--one-order", help="Judge each pair in one order only (the default judges both "
        "orders and averages, which cancels the judge's position bias).")] = False,
    principles: Annotated[int, typer.Option(
        "--principles", metavar="K", help="Comparison principles sampled per pair (seeded by "
        "the pair's id) and averaged; 0 uses all of them.")] = 1,
    cot: Annotated[bool, typer.Option(
        "--cot", help="The judge reasons step by step first; then the options are scored and "
        "each judgment is clamped (0.4,0.6 unless --clamp says otherwise).")] = False,
    clamp: Annotated[str | None, typer.Option(
        "--clamp", metavar="LO,HI", help="Clamp every judgment's probability into [LO, HI] "
        "(default with --cot: 0.4,0.6; without: no clamping).")] = None,
    hard: Annotated[bool, typer.Option(
        "--hard", help="Binarised labels: p_chosen 1.0, or 0.5 for a tie.")] = False,
    tie_threshold: Annotated[float, typer.Option(
        "--tie-threshold", help="A pair whose |p - 0.5| is below this is marked a tie.")] = 0.05,
    drop_ties: Annotated[bool, typer.Option(
        "--drop-ties", help="Leave ties out of the output.")] = False,
    pairs: Annotated[str, typer.Option(
        "--pairs", help="With more than two responses: all (every pair i < j) or first "
        "(responses 0 and 1 only).")] = "all",
    max_new_tokens: Annotated[int, typer.Option(
        "--max-new-tokens", help="--cot: most tokens of reasoning per judgment.")] = 256,
    temperature: Annotated[float, typer.Option(
        "--temperature", help="--cot: reasoning temperature; 0 is greedy.")] = 0.0,
    seed: Annotated[int, typer.Option(
        "--seed", help="Seed for principle sampling (and sampled reasoning).")] = 0,
    stream_flags: StreamFlags = None,
    model: ModelFlags = None,
) -> None:
    """Judge pairs of responses with a feedback model: preference pairs with soft labels.

    Reads records with 'prompt' or 'messages' and 'responses' (two or more, as 'caitool
    generate -n 2' writes them). For each pair the judge sees the conversation, a comparison
    principle and the two responses as options (A) and (B); the log-probabilities of " (A)"
    and " (B)" give the label. Writes TRL preference records: 'prompt', 'chosen', 'rejected',
    'p_chosen' (>= 0.5), with 'judgments', 'orders_agree', 'tie', 'pair' and provenance.
    A record with N responses gives N(N-1)/2 pairs (--pairs all); the pair of responses 0
    and 1 keeps the record's id, the others get 'ID:I-J'.
    """
    if pairs not in PAIRINGS:
        raise CaitoolError(f"--pairs must be {' or '.join(PAIRINGS)}, not '{pairs}'")
    if not 0 <= tie_threshold <= 0.5:
        raise CaitoolError("--tie-threshold must be between 0 and 0.5")
    if model.format not in ("auto", "chat", "raw"):
        raise CaitoolError(f"--format must be auto, chat or raw, not '{model.format}'")
    rules = constitutions.load(constitution)
    settings = JudgeSettings(
        both_orders=not one_order, principles=principles, cot=cot, clamp=parse_clamp(clamp),
        seed=seed, fmt=model.format, max_new_tokens=max_new_tokens, temperature=temperature,
    )
    settings.check(rules)
    options = LabelOptions(hard=hard, tie_threshold=tie_threshold, drop_ties=drop_ties,
                           pairs=pairs)
    backend = model.create_backend()
    # A resumed run skips records whose id is written (see preferences.pair_indices) and,
    # for records only partly written, the pairs that are.
    written = (done_ids(stream_flags.output)
               if stream_flags.resume and stream_flags.output not in (None, "-") else set())
    resolved: dict[str, str] = {}

    def process(batch):
        if "fmt" not in resolved:
            # Resolving 'auto' loads the tokenizer: only once there is input to judge.
            resolved["fmt"] = backend.default_format() if settings.fmt == "auto" else settings.fmt
            settings.fmt = resolved["fmt"]
        clamp_range = settings.effective_clamp()
        provenance = {
            **backend.describe(), "format": settings.fmt, "constitution": rules.name,
            "principles": principles, "both_orders": settings.both_orders, "cot": cot,
            "clamp": list(clamp_range) if clamp_range else None, "seed": seed,
            "labels": "hard" if hard else "soft", "tie_threshold": tie_threshold,
        }
        return compare(backend, rules, batch, settings, options, provenance, skip_ids=written)

    stream.run(NAME, input, stream_flags, process, validate=check_for_compare,
               describe="comparing")
