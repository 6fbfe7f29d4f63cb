"""The ``caitool`` entry point: one sub-command per module in :mod:`caitool.commands`.

A command module defines ``NAME`` and either ``command`` (a function; its docstring is the
help, ``EXAMPLE`` is shown under it) or ``app`` (a typer app with sub-commands).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import signal
import sys
import textwrap

import typer

try:  # typer >= 0.26 vendors click; its exceptions are not click's own
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer
    from click import exceptions as click_errors

from caitool import __version__, commands, console
from caitool.errors import CaitoolError

app = typer.Typer(
    name="caitool",
    help="Constitutional AI (Bai et al., 2022) as composable Unix commands: JSONL in, JSONL out.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
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
            app.command(module.NAME, epilog=epilog, no_args_is_help=False)(module.command)


_register()


def _command_name(argv: list[str]) -> str:
    names = [a for a in argv if not a.startswith("-")]
    return f"caitool {names[0]}" if names else "caitool"


def main(argv: list[str] | None = None) -> None:
    # Die quietly when the reader of a pipe goes away (`caitool ... | head`).
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else argv
    name = _command_name(argv)
    console.current_command = name.removeprefix("caitool").strip()
    try:
        code = app(args=argv, prog_name="caitool", standalone_mode=False)
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
