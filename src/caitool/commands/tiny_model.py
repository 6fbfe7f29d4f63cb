from __future__ import annotations

from typing import Annotated

import typer

from caitool import console

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
) -> None:
    """Build a tiny random Llama-architecture model with a tokenizer and chat template, offline.

    Deterministic for a given seed; used by the tests and 'make smoke' so no model hub is needed.
    """
    from caitool.testing.tiny import build

    path = build(directory, seed=seed, seq_cls=reward, hidden_size=hidden_size, layers=layers)
    console.info(NAME, f"wrote {'reward' if reward else 'causal'} model to {path}")
