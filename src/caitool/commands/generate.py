from __future__ import annotations

from typing import Annotated

import typer

from caitool.commands._flags import Input, ModelFlags, SamplingFlags, StreamFlags, command
from caitool.errors import CaitoolError
from caitool.io import stream
from caitool.schema import check_prompt
from caitool.stages import supervised

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
    params = sampling.params()
    with model.create_backend() as backend:
        sampler = supervised.Sampler(backend, params, model.format)
        step = model.step(backend, lambda batch: supervised.generate(sampler, batch, n=n),
                          ("response",), stream_flags)
        stream.run(NAME, input, step, validate=check_prompt, describe="generating",
                   **stream_flags.stream_options())
