from __future__ import annotations

from caitool import constitution as constitutions
from caitool import stream, supervised
from caitool.commands._common import Constitution, Input, make_generator
from caitool.options import ModelFlags, SamplingFlags, StreamFlags, command

NAME = "critique"
EXAMPLE = """    caitool critique -m ./tiny < examples/red_team.jsonl | caitool revise -m ./tiny > round1.jsonl
    # two rounds:
    caitool critique -m M < p.jsonl | caitool revise -m M | caitool critique -m M | caitool revise -m M"""


@command
def command(
    input: Input = "-",
    constitution: Constitution = "harmless",
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
    generator = make_generator(model, sampling)
    stream.run(NAME, input, stream_flags,
               lambda batch: supervised.critique(generator(), rules, batch),
               validate=supervised.check_for_critique, describe="critiquing")
