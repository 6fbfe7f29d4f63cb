from __future__ import annotations

from caitool import constitution as constitutions
from caitool import stream, supervised
from caitool.commands._common import Constitution, Input, make_generator
from caitool.options import ModelFlags, SamplingFlags, StreamFlags, command

NAME = "revise"
EXAMPLE = """    caitool critique -m ./tiny < examples/red_team.jsonl | caitool revise -m ./tiny > round1.jsonl"""


@command
def command(
    input: Input = "-",
    constitution: Constitution = "harmless",
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
        problem = supervised.check_for_revise(record)
        if problem is None and record["revisions"][-1].get("principle") not in known:
            return (f"principle '{record['revisions'][-1].get('principle')}' is not in "
                    f"constitution '{rules.name}' (use the one the critique used)")
        return problem

    generator = make_generator(model, sampling)
    stream.run(NAME, input, stream_flags,
               lambda batch: supervised.revise(generator(), rules, batch),
               validate=validate, describe="revising")
