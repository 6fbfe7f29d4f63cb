from __future__ import annotations

from caitool import constitution as constitutions
from caitool.commands._flags import ConstitutionName, Input, ModelFlags, SamplingFlags, StreamFlags, command
from caitool.io import stream
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
) -> None:
    """Critique each record's response under a randomly sampled principle.

    Records without a 'response' are answered first (it becomes 'initial_response'). A new
    round {principle, critique, revision: null} is appended to 'revisions'; 'caitool revise'
    fills in the revision.
    """
    rules = constitutions.load(constitution)
    rules.require_principles()
    params = sampling.params()
    with model.create_backend() as backend:
        sampler = supervised.Sampler(backend, params, model.format)
        step = model.step(backend, lambda batch: supervised.critique(sampler, rules, batch),
                          ("response", "critique"), stream_flags)
        stream.run(NAME, input, step, validate=check_for_critique, describe="critiquing",
                   **stream_flags.stream_options())
