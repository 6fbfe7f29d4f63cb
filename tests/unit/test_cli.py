"""Every command has help with an example that the README shows too; flags read as flags;
the CLI starts light."""

import subprocess
import sys

import pytest

from caitool.cli import command_modules
from helpers import ROOT, run_cli

MODULES = list(command_modules())


def _words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.NAME)
def test_every_command_has_help_with_its_example(module):
    result = run_cli(module.NAME, "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0
    text = _words(result.stdout.decode())
    assert f"Usage: caitool {module.NAME}" in text
    for line in module.EXAMPLE.strip().splitlines():
        assert _words(line) in text


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.NAME)
def test_every_command_example_is_in_the_readme(module):
    readme = _words((ROOT / "README.md").read_text())
    for line in module.EXAMPLE.strip().splitlines():
        assert _words(line) in readme, f"README.md lacks {module.NAME}'s example: {line.strip()}"


def test_boolean_flags_take_no_value_in_help():
    text = run_cli("compare", "--help", env={"COLUMNS": "200"}).stdout.decode()
    assert "<bool>" not in text
    assert "--one-order" in text and "--resume" in text and "--cot" in text


def test_shell_completion_is_offered_and_completes():
    text = run_cli("--help", env={"COLUMNS": "200"}).stdout.decode()
    assert "--install-completion" in text
    words = run_cli(env={"_CAITOOL_COMPLETE": "complete_bash", "COMP_WORDS": "caitool critique --ba",
                         "COMP_CWORD": "2"}).stdout.decode().split()
    assert {"--batch-size", "--backend", "--base-url"} <= set(words)


def test_help_does_not_import_the_heavy_stack():
    code = ("import sys; from caitool.cli import main\n"
            "for args in (['--help'], ['critique', '--help'], ['train-sft', '--help']):\n"
            "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'trl', 'vllm', 'datasets', 'openai')"
            " if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout.decode()
    assert "HEAVY []" in out


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.decode().startswith("caitool ")
