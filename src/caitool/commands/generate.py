from __future__ import annotations

from typing import Annotated

import typer

from caitool.commands._flags import Input, ModelFlags, RayFlags, SamplingFlags, StreamFlags, command, run_records
from caitool.errors import CaitoolError
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
    scale: RayFlags = None,
) -> None:
    """Answer prompt records with the model ('response', or 'responses' with -n > 1)."""
    if n < 1:
        raise CaitoolError("-n/--num-samples must be at least 1")
    run_records(NAME, input, model=model, stream_flags=stream_flags, scale=scale,
                step=supervised.step(supervised.generate, sampling.params(), model.format, n=n),
                validate=check_prompt, describe="generating")
