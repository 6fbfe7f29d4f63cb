from __future__ import annotations

from typing import Annotated

import typer

from caitool import stream, supervised
from caitool.commands._common import Input, make_generator
from caitool.errors import CaitoolError
from caitool.options import ModelFlags, SamplingFlags, StreamFlags, command
from caitool.records import check_prompt

NAME = "generate"
EXAMPLE = """    caitool generate -m ./tiny < examples/red_team.jsonl > answers.jsonl
    caitool generate -m ./sft -n 2 < prompts.jsonl | caitool compare -m ./judge > prefs.jsonl"""


@command
def command(
    input: Input = "-",
    n: Annotated[int, typer.Option("-n", "--num-samples",
                                   help="Samples per prompt: 1 sets 'response', more set 'responses'.")] = 1,
    stream_flags: StreamFlags = None,
    model: ModelFlags = None,
    sampling: SamplingFlags = None,
) -> None:
    """Answer prompt records with the model ('response', or 'responses' with -n > 1)."""
    if n < 1:
        raise CaitoolError("-n/--num-samples must be at least 1")
    generator = make_generator(model, sampling)
    stream.run(NAME, input, stream_flags,
               lambda batch: supervised.generate(generator(), batch, n=n),
               validate=check_prompt, describe="generating")
