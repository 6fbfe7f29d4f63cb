"""Every command has help with an example, is documented, and the CLI starts light."""

import subprocess
import sys

import pytest

from caitool.cli import command_modules
from conftest import ROOT, caitool

MODULES = list(command_modules())


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.NAME)
def test_every_command_has_help_with_an_example(module):
    result = caitool(module.NAME, "--help")
    text = result.stdout.decode()
    assert "Usage:" in text
    assert module.EXAMPLE.strip().splitlines()[0].strip() in text


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.NAME)
def test_every_command_is_documented_in_the_readme(module):
    readme = (ROOT / "README.md").read_text()
    assert f"caitool {module.NAME}" in readme


def test_help_does_not_import_the_heavy_stack():
    code = ("import sys; from caitool.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'trl', 'vllm', 'datasets') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout.decode()
    assert "HEAVY []" in out


def test_version():
    assert caitool("--version").stdout.decode().startswith("caitool ")
