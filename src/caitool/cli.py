"""The ``caitool`` entry point: one sub-command per module in :mod:`caitool.commands`.

A command module defines ``NAME`` and either ``command`` (a function; its docstring is the
help, ``EXAMPLE`` is shown under it) or ``app`` (a typer app with sub-commands). A function
may carry ``command_class`` and ``context_settings`` for typer (the training commands do, see
commands/_training.py).
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import io
import logging
import math
import os
import pkgutil
import signal
import sys
import textwrap
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import typer
from typer.core import TyperGroup

from caitool import __version__, commands, console
from caitool.commands._flags import Command, NoTypeForHelp
from caitool.errors import CaitoolError
from caitool.io.jsonl import STDIN_CLOSED
from caitool.io.output import STDOUT_CLOSED

HELP_OPTIONS = ["-h", "--help"]


class _Group(NoTypeForHelp, TyperGroup):
    def main(self, args=None, prog_name=None, **extra):
        """Run a command, with caitool's, click's and typer's errors as one line on stderr and
        an exit status, whoever runs it: :func:`main`, or a test through typer's CliRunner."""
        argv = list(sys.argv[1:] if args is None else args)
        name = _command_name(argv)
        _show_library_warnings(name.removeprefix("caitool").strip())
        console.quiet_libraries(name.removeprefix("caitool").strip())
        _run(lambda: super(_Group, self).main(args=argv, prog_name=prog_name or "caitool",
                                              **{**extra, "standalone_mode": False}), name)


app = typer.Typer(
    cls=_Group,
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
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, metavar="",
                                 help="Print the version and exit."),
) -> None:
    pass


def _finite(value: Any) -> Any:
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(item, float) and not math.isfinite(item):
            raise typer.BadParameter(f"{item} is not a finite number")
    return value


def conventions(annotation: Any) -> Any:
    """caitool's conventions on an ``Annotated[type, typer.Option(...)]``: a boolean flag
    shows no type in help (it takes no value); a number refuses nan and inf, which every
    float flag parses and no caitool number means anything at."""
    if get_origin(annotation) is not Annotated:
        return annotation
    kind, *extras = get_args(annotation)
    kinds = set(get_args(kind) or (kind,))
    kinds |= {arg for k in kinds if get_origin(k) is list for arg in get_args(k)}
    made = []
    for extra in extras:
        if isinstance(extra, typer.models.OptionInfo):
            extra = copy.copy(extra)
            if kind is bool and extra.metavar is None:
                extra.metavar = ""
            if float in kinds and extra.callback is None:
                extra.callback = _finite
        made.append(extra)
    return Annotated[(kind, *made)]


def conventional(fn):
    """``fn`` with :func:`conventions` on the options of its signature: cli.py registers
    every command function so."""
    signature = inspect.signature(fn)
    hints = get_type_hints(fn, include_extras=True)
    params = [param.replace(annotation=conventions(hints.get(name, param.annotation)))
              for name, param in signature.parameters.items()]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


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
            app.command(module.NAME, epilog=epilog, no_args_is_help=False,
                        cls=getattr(module.command, "command_class", Command),
                        context_settings=getattr(module.command, "context_settings", None),
                        )(conventional(module.command))


_register()


def _command_name(argv: list[str]) -> str:
    names = [a for a in argv if not a.startswith("-")]
    return f"caitool {names[0]}" if names else "caitool"


def _click_error(name: str) -> type[Exception]:
    """click's exception class ``name`` as typer raises it: recent typer releases carry a
    copy of click of their own, older ones use click itself. ``typer.BadParameter``, which
    typer exports, derives from both classes wanted here, in either."""
    return next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == name)


UsageError, ClickException = _click_error("UsageError"), _click_error("ClickException")


def build_command():
    """The click command behind the typer app."""
    return typer.main.get_command(app)


class _ClosedStream:
    """Stands in for a standard stream the shell closed (``<&-``, ``>&-``): using it is a
    one-line error instead of an AttributeError on None, or output silently dropped."""

    closed = True

    def __init__(self, message: str):
        self.message = message

    def _refuse(self, *args, **kwargs):
        raise CaitoolError(self.message)

    read = readline = readlines = write = writelines = __iter__ = _refuse
    buffer = property(_refuse)

    def fileno(self) -> int:
        raise io.UnsupportedOperation("closed")

    def isatty(self) -> bool:
        return False

    def flush(self) -> None:
        pass


def _reserve(fd: int, mode: int) -> None:
    """Put /dev/null on a closed descriptor, so that no file this run opens lands on it
    (where a library's print would write into it)."""
    try:
        os.fstat(fd)
    except OSError:
        spare = os.open(os.devnull, mode)
        if spare != fd:
            os.dup2(spare, fd)
            os.close(spare)


def _closed_streams() -> None:
    """Python sets a standard stream to None when the shell closed it. Reading closed stdin
    or writing closed stdout is an error when it happens; closed stderr drops messages (as
    2>/dev/null would) while the data and the exit status stay what they would be."""
    if sys.stdin is None:
        _reserve(0, os.O_RDONLY)
        sys.stdin = _ClosedStream(STDIN_CLOSED)
    if sys.stdout is None:
        _reserve(1, os.O_WRONLY)
        sys.stdout = _ClosedStream(STDOUT_CLOSED)
    if sys.stderr is None:
        _reserve(2, os.O_WRONLY)
        sys.stderr = open(os.devnull, "w")


class Terminated(BaseException):
    """SIGTERM, raised where the program is, like Ctrl-C's KeyboardInterrupt (and, like it,
    held back while a batch is written)."""


def _terminate(signum, frame):
    raise Terminated()


def _show_library_warnings(command: str) -> None:
    """Warnings that library code logs reach stderr as this command's warnings."""
    logger = logging.getLogger("caitool")
    logger.handlers[:] = [console.WarningHandler(command)]
    logger.setLevel(logging.WARNING)
    logger.propagate = False


def main(argv: list[str] | None = None) -> None:
    _closed_streams()
    # Die quietly when the reader of a pipe goes away (`caitool ... | head`).
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        sigterm = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave signals alone
        sigterm = None
    try:
        build_command().main(args=sys.argv[1:] if argv is None else argv, prog_name="caitool")
    finally:
        if sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)


def _run(invoke, name: str) -> None:
    try:
        code = invoke()
        # Outside standalone mode typer returns exit codes instead of exiting; Ctrl-C
        # comes back as 130.
        if code == 130:
            print(f"{name}: interrupted", file=sys.stderr)
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else name
        if exc.format_message():  # empty when help was shown for a bare command
            print(f"{where}: {exc.format_message()}", file=sys.stderr)
        sys.exit(2)
    except ClickException as exc:
        print(f"{name}: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except CaitoolError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)
    except Terminated:
        print(f"{name}: terminated", file=sys.stderr)
        sys.exit(143)
    except BrokenPipeError:
        sys.exit(0)
