from __future__ import annotations

import sys
from typing import Annotated

import typer
import yaml

from caitool import constitution as constitutions

NAME = "constitution"
EXAMPLE = """    caitool constitution list
    caitool constitution show harmless
    caitool constitution validate ./my-principles.yaml"""

app = typer.Typer(help="List, show and validate constitutions.", no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="A built-in name, or a YAML/JSON file or a directory.")]


@app.command("list")
def list_() -> None:
    """List the built-in constitutions with their principle counts."""
    from rich.table import Table

    table = Table("name", "critique/revision", "comparison", "few-shot", "description")
    for name in constitutions.builtin_names():
        c = constitutions.load(name)
        table.add_row(name, str(len(c.principles)), str(len(c.comparisons)),
                      f"{len(c.critique_examples)}+{len(c.comparison_examples)}",
                      c.description[:60])
    if sys.stdout.isatty():
        from rich.console import Console

        Console().print(table)
    else:
        for name in constitutions.builtin_names():
            typer.echo(name)


@app.command()
def show(name: Name) -> None:
    """Print a constitution in caitool's YAML format (converting other formats)."""
    c = constitutions.load(name)
    typer.echo(yaml.safe_dump(c.to_dict(), sort_keys=False, allow_unicode=True, width=100), nl=False)


@app.command()
def validate(name: Name) -> None:
    """Check a constitution; print a one-line summary, or the problem and exit 1."""
    c = constitutions.load(name)
    typer.echo(
        f"{c.name}: ok ({len(c.principles)} critique/revision principles, "
        f"{len(c.comparisons)} comparison principles, "
        f"{len(c.critique_examples)} critique and {len(c.comparison_examples)} comparison examples)"
    )
