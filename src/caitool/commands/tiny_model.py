from __future__ import annotations

from typing import Annotated

import typer

from caitool import console
from caitool.errors import CaitoolError

NAME = "tiny-model"
EXAMPLE = """    caitool tiny-model /tmp/tiny && caitool generate -m /tmp/tiny < examples/smoke.jsonl
    caitool tiny-model --reward /tmp/tiny-rm   # a matching one-output classifier"""


def command(
    directory: Annotated[str, typer.Argument(help="Where to write the model.")],
    reward: Annotated[bool, typer.Option(
        "--reward", help="Build a sequence-classification model (one output) instead.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the random weights.")] = 0,
    hidden_size: Annotated[int, typer.Option("--hidden-size")] = 64,
    layers: Annotated[int, typer.Option("--layers")] = 2,
    head_dim: Annotated[int | None, typer.Option(
        "--head-dim", help="Size of each attention head (default: hidden size / 4, i.e. 16). "
                           "vLLM needs one it has kernels for: 64 works on CPU and GPU.")] = None,
) -> None:
    """Build a tiny random Llama-architecture model with a tokenizer and chat template, offline.

    Deterministic for a given seed; used by the tests and 'make smoke' so no model hub is needed.
    """
    from caitool.testing.tiny import build

    if head_dim is not None and head_dim < 1:
        raise CaitoolError("--head-dim must be at least 1")
    path = build(directory, seed=seed, seq_cls=reward, hidden_size=hidden_size, layers=layers,
                 head_dim=head_dim)
    console.info(NAME, f"wrote {'reward' if reward else 'causal'} model to {path}")
