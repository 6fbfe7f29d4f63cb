"""The ``caitool`` entry point: one sub-command per module in :mod:`caitool.commands`.

A command module defines ``NAME`` and either ``command`` (a function; its docstring is the
help, ``EXAMPLE`` is shown under it) or ``app`` (a typer app with sub-commands); optionally
``CONTEXT_SETTINGS`` for click.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import signal
import sys
import textwrap

import typer

# typer vendors click (pinned in pyproject); its classes are not click's own
from typer._click import core as click_core
from typer._click import exceptions as click_errors

from caitool import __version__, commands, console
from caitool.errors import CaitoolError

HELP_OPTIONS = ["-h", "--help"]
app = typer.Typer(
    name="caitool",
    help="Constitutional AI (Bai et al., 2022) as composable Unix commands: JSONL in, JSONL out.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": HELP_OPTIONS},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"caitool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    pass


def command_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"caitool.commands.{info.name}")


def _register() -> None:
    for module in command_modules():
        example = getattr(module, "EXAMPLE", "")
        epilog = f"**Example**\n\n```bash\n{textwrap.dedent(example).strip()}\n```" if example else None
        if hasattr(module, "app"):
            app.add_typer(module.app, name=module.NAME, epilog=epilog)
        else:
            # Training commands take TRL's own config fields as flags beyond their own.
            app.command(module.NAME, epilog=epilog, no_args_is_help=False,
                        context_settings=getattr(module, "CONTEXT_SETTINGS", None))(module.command)


_register()


def _command_name(argv: list[str]) -> str:
    names = [a for a in argv if not a.startswith("-")]
    return f"caitool {names[0]}" if names else "caitool"


def _flags_without_type(command) -> None:
    """A boolean flag takes no value: show it as ``--resume``, not ``--resume <bool>``."""
    context = click_core.Context(command, help_option_names=HELP_OPTIONS)
    for param in [*command.params, command.get_help_option(context)]:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _flags_without_type(sub)


def build_command():
    """The click command behind the typer app, with caitool's help conventions."""
    command = typer.main.get_command(app)
    _flags_without_type(command)
    return command


def _show_library_warnings(command: str) -> None:
    """Warnings that library code logs reach stderr as this command's warnings."""
    logger = logging.getLogger("caitool")
    logger.handlers[:] = [console.WarningHandler(command)]
    logger.setLevel(logging.WARNING)
    logger.propagate = False


def main(argv: list[str] | None = None) -> None:
    # Die quietly when the reader of a pipe goes away (`caitool ... | head`).
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else argv
    name = _command_name(argv)
    _show_library_warnings(name.removeprefix("caitool").strip())
    try:
        code = build_command().main(args=argv, prog_name="caitool", standalone_mode=False)
        # Outside standalone mode typer returns exit codes instead of exiting; Ctrl-C
        # comes back as 130.
        if code == 130:
            print(f"{name}: interrupted", file=sys.stderr)
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except click_errors.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else name
        if exc.format_message():  # empty when help was shown for a bare command
            print(f"{where}: {exc.format_message()}", file=sys.stderr)
        sys.exit(2)
    except click_errors.ClickException as exc:
        print(f"{name}: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except CaitoolError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
