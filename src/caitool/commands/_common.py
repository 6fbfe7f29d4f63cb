"""Pieces the record commands share."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.backends.base import SamplingParams
from caitool.options import ModelFlags, SamplingFlags
from caitool.supervised import Generator

Input = Annotated[str, typer.Argument(help="JSONL input file, or - for stdin.", show_default=True)]
Constitution = Annotated[str, typer.Option(
    "-c", "--constitution", envvar="CAITOOL_CONSTITUTION",
    help="A built-in constitution's name (see 'caitool constitution list') or a file/directory.")]


def make_generator(model: ModelFlags, sampling: SamplingFlags) -> Generator:
    """Check the flags, then build the (lazily loading) backend."""
    sampling.check()
    backend = model.create_backend()
    params = SamplingParams(max_new_tokens=sampling.max_new_tokens,
                            temperature=sampling.temperature, top_p=sampling.top_p,
                            seed=sampling.seed)

    class Lazy:
        """Defers picking the prompt format (which loads the tokenizer) to the first batch,
        so that empty input needs no model."""

        value: Generator | None = None

        def __call__(self) -> Generator:
            if self.value is None:
                self.value = Generator.create(backend, model.format, params)
            return self.value

    return Lazy()
