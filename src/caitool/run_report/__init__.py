"""``caitool report``: a whole run on one self-contained HTML page.

:mod:`~caitool.run_report.reading` finds a run directory's stage files and reads them with
caitool's own readers, :mod:`~caitool.run_report.gather` and
:mod:`~caitool.run_report.numbers` compute each section, :mod:`~caitool.run_report.page`
and :mod:`~caitool.run_report.sections` write the HTML with :mod:`~caitool.run_report.svg`
plots.
"""

from __future__ import annotations

from caitool.run_report.gather import gather
from caitool.run_report.page import render
from caitool.run_report.reading import Problems


def build(path: str, quiet: bool = False) -> tuple[str, list[str]]:
    """The page for run directory ``path`` and the problems met reading it (each one also a
    warning on stderr unless ``quiet``)."""
    problems = Problems(quiet=quiet)
    _, found = gather(path, problems)
    incomplete = {key: problems.about(*section.files)
                  for key, section in found.items() if section is not None}
    return render(str(path), found, problems.messages, incomplete), problems.messages
