"""`caitool report`'s page as a person sees it: opened in headless chromium, its script runs
without an error, every section and plot is drawn with a size, and the screenshot is not
blank. Skipped, saying why, where chromium is not installed (make browser installs it)."""

from __future__ import annotations

import pytest

from helpers import caitool
from report_checks import CHROMIUM, NO_CHROMIUM, check_rendered, small_run


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_the_page_renders_in_a_real_browser(tmp_path):
    run = small_run(tmp_path / "run")
    page = tmp_path / "report.html"
    caitool("report", run, "-o", page)
    check_rendered(page, tmp_path)
