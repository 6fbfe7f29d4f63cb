from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

NAME = "report"
EXAMPLE = """    caitool report runs/smoke -o runs/smoke/report.html   # then open it in a browser
    caitool report runs/demo                                # writes runs/demo/report.html"""


def command(
    run_dir: Annotated[str, typer.Argument(
        metavar="RUN_DIR", help="A run directory of make all, make smoke or make demo.")],
    output: Annotated[str | None, typer.Option(
        "-o", "--output", help="The HTML file to write (default RUN_DIR/report.html; - for "
                               "stdout).")] = None,
) -> None:
    """One self-contained HTML page about a whole run: models and settings, the supervised
    stage's revisions per round and per principle with a sample of records, the judge's
    labels and calibration, the reward model, RL curves and the evaluation.

    Each section appears only when the run holds its data; a run cut short gives a shorter
    page, and every problem met (a bad line, a torn metrics file, a file of the wrong kind) is
    a warning on stderr and a note on the page, with exit status 0. Open the page from disk:
    it fetches nothing and reads without JavaScript.
    """
    from caitool import console
    from caitool.io.jsonl import check_writable, write_text
    from caitool.run_report import build

    target = output if output is not None else str(Path(run_dir) / "report.html")
    if output is not None or Path(run_dir).is_dir():  # else build names what RUN_DIR is
        check_writable(target, "-o")
    page, problems = build(run_dir)
    write_text(target, page, "-o")
    if target != "-":
        where = f"{target} ({len(page.encode()) / 1024:.0f} KB"
        console.info(NAME, f"wrote {where}, {len(problems)} problem(s))")
