from __future__ import annotations

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
from caitool.schema import check_for_critique
from caitool.stages import supervised

NAME = "critique"
EXAMPLE = """    caitool critique -m ./tiny < examples/red_team.jsonl | caitool revise -m ./tiny > round1.jsonl
    # two rounds:
    caitool critique -m M < p.jsonl | caitool revise -m M | caitool critique -m M | caitool revise -m M"""


@command
def command(
    input: Input = "-",
    constitution: ConstitutionName = "harmless",
    stream_flags: StreamFlags = None,
    model: ModelFlags = None,
    sampling: SamplingFlags = None,
    scale: RayFlags = None,
) -> None:
    """Critique each record's response under a randomly sampled principle.

    Records without a 'response' are answered first (it becomes 'initial_response'). A new
    round {principle, critique, revision: null} is appended to 'revisions'; 'caitool revise'
    fills in the revision.
    """
    # -o onto the constitution would destroy it.
    check_outputs([("-o", stream_flags.output)], [("-c", constitution)])
    rules = constitutions.load(constitution)
    rules.require_principles()
    run_records(NAME, input, model=model, stream_flags=stream_flags, scale=scale,
                step=supervised.step(supervised.critique, sampling.params(), model.format, rules),
                validate=check_for_critique, describe="critiquing")
