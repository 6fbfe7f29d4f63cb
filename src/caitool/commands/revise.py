from __future__ import annotations

from typing import Annotated

import typer

from caitool import constitution as constitutions
from caitool.commands._flags import (
    ConstitutionName,
    Input,
    ModelFlags,
    RayFlags,
    SamplingFlags,
    StreamFlags,
    command,
    run_records,
)
from caitool.io.output import check_outputs
from caitool.schema import check_for_critique, check_for_revise
from caitool.stages import supervised

NAME = "revise"
EXAMPLE = """    caitool critique -m ./tiny < examples/red_team.jsonl | caitool revise -m ./tiny > round1.jsonl
    caitool revise --direct -m ./tiny < examples/red_team.jsonl > direct1.jsonl   # no critique
    caitool revise --rounds 2 -m ./tiny < examples/red_team.jsonl > round2.jsonl   # critique, revise, twice"""


@command
def command(
    input: Input = "-",
    constitution: ConstitutionName = "harmless",
    direct: Annotated[bool, typer.Option(
        "--direct", help="Revise without a critique (the paper's ablation): read records with "
        "no pending critique, as 'caitool critique' does (answering those without a "
        "response), sample a principle per record and round as it does, and ask for the "
        "revision right after the response. The round is {principle, critique: null, "
        "revision, direct: true}.")] = False,
    rounds: Annotated[int | None, typer.Option(
        "--rounds", min=1, help="Run N whole rounds in this one process, the model loaded "
        "once: read records with no pending critique, as 'caitool critique' does, then "
        "critique and revise each N times (with --direct: N direct revisions). The records "
        "are those of N 'critique | revise' pairs with the same seed.")] = None,
    stream_flags: StreamFlags = None,
    model: ModelFlags = None,
    sampling: SamplingFlags = None,
    scale: RayFlags = None,
) -> None:
    """Revise each response as its pending critique asks, and make the revision the response.

    The revision is asked for in the same conversation as the critique, with the revision
    request paired with the critique's principle. With --direct there is no critique: the
    revision request follows the response, and the few-shot examples show none either.
    """
    # -o onto the constitution would destroy it.
    check_outputs([("-o", stream_flags.output)], [("-c", constitution)])
    rules = constitutions.load(constitution)
    known = {p.id for p in rules.principles}

    def validate(record):
        problem = check_for_revise(record)
        if problem is None and record["revisions"][-1].get("principle") not in known:
            return (f"principle '{record['revisions'][-1].get('principle')}' is not in "
                    f"constitution '{rules.name}' (use the one the critique used)")
        return problem

    opens_rounds = direct or rounds is not None
    if opens_rounds:
        # --direct alone is one direct round.
        rules.require_principles()
        step = supervised.step(supervised.rounds, sampling.params(), model.format, rules,
                               count=rounds or 1, direct=direct)
    else:
        step = supervised.step(supervised.revise, sampling.params(), model.format, rules)
    describe = (f"{rounds} round{'s' if rounds > 1 else ''}" if rounds
                else "revising directly" if direct else "revising")
    run_records(NAME, input, model=model, stream_flags=stream_flags, scale=scale, step=step,
                validate=check_for_critique if opens_rounds else validate,
                describe=describe)
