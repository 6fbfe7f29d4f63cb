from __future__ import annotations

from caitool import constitution as constitutions
from caitool.commands._flags import ConstitutionName, Input, ModelFlags, SamplingFlags, StreamFlags, command
from caitool.io import stream
from caitool.schema import check_for_revise
from caitool.stages import supervised

NAME = "revise"
EXAMPLE = """    caitool critique -m ./tiny < examples/red_team.jsonl | caitool revise -m ./tiny > round1.jsonl"""


@command
def command(
    input: Input = "-",
    constitution: ConstitutionName = "harmless",
    stream_flags: StreamFlags = None,
    model: ModelFlags = None,
    sampling: SamplingFlags = None,
) -> None:
    """Revise each response as its pending critique asks, and make the revision the response.

    The revision is asked for in the same conversation as the critique, with the revision
    request paired with the critique's principle.
    """
    rules = constitutions.load(constitution)
    known = {p.id for p in rules.principles}

    def validate(record):
        problem = check_for_revise(record)
        if problem is None and record["revisions"][-1].get("principle") not in known:
            return (f"principle '{record['revisions'][-1].get('principle')}' is not in "
                    f"constitution '{rules.name}' (use the one the critique used)")
        return problem

    params = sampling.params()
    with model.create_backend() as backend:
        sampler = supervised.Sampler(backend, params, model.format)
        step = model.step(backend, lambda batch: supervised.revise(sampler, rules, batch),
                          ("revision",), stream_flags)
        stream.run(NAME, input, step, validate=validate, describe="revising",
                   **stream_flags.stream_options())
