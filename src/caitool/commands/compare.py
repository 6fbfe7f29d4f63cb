from __future__ import annotations

from typing import Annotated

import typer

from caitool import constitution as constitutions
from caitool.commands._flags import ConstitutionName, Input, ModelFlags, RayFlags, StreamFlags, command, run_records
from caitool.errors import CaitoolError
from caitool.io.output import check_outputs
from caitool.schema import check_samples
from caitool.stages.feedback import PAIRINGS, LabelOptions, compare_step
from caitool.stages.judging import JudgeSettings, parse_clamp

NAME = "compare"
EXAMPLE = (
    "    caitool generate -m ./sft -n 2 < prompts.jsonl | caitool compare -m ./judge > p.jsonl\n"
    "    caitool compare -m ./judge --principles 4 --cot --drop-ties pairs.jsonl -o prefs.jsonl"
)


@command
def command(
    input: Input = "-",
    constitution: ConstitutionName = "harmless",
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
    scale: RayFlags = None,
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
    # -o onto the constitution would destroy it.
    check_outputs([("-o", stream_flags.output)], [("-c", constitution)])
    rules = constitutions.load(constitution)
    settings = JudgeSettings(
        both_orders=not one_order, principles=principles, cot=cot, clamp=parse_clamp(clamp),
        seed=seed, fmt=model.format, max_new_tokens=max_new_tokens, temperature=temperature,
    )
    settings.check(rules)
    options = LabelOptions(hard=hard, tie_threshold=tie_threshold, drop_ties=drop_ties,
                           pairs=pairs)
    run_records(NAME, input, model=model, stream_flags=stream_flags, scale=scale,
                step=compare_step(rules, settings, options), validate=check_samples,
                describe="comparing")
