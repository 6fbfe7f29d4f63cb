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
    rules = constitutions.load(constitution)
    rules.require_principles()
    params, fmt = sampling.params(), model.format

    def make_step(backend, done):
        sampler = supervised.Sampler(backend, params, fmt)
        return lambda batch: supervised.critique(sampler, rules, batch)

    run_records(NAME, input, model=model, stream_flags=stream_flags, scale=scale,
                make_step=make_step, steps=("response", "critique"),
                validate=check_for_critique, describe="critiquing")
