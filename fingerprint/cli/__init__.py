"""The ``fingerprint`` command line. Only this package touches argv and the terminal.

Commands live in sibling modules (``train``, ``extract``, ``analyze``) that register themselves on
``app``. Every :class:`~fingerprint.errors.UserError` becomes a one-line ``error: ...`` on stderr
and exit status 2.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from fingerprint.errors import UserError

app = typer.Typer(
    name="fingerprint",
    help="Train seed-varied populations, fingerprint them, and test whether fingerprints track deep differences or initialization noise.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

_COMMAND_MODULES = ("train", "extract", "analyze", "extras")


def _register() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        try:
            importlib.import_module(f"fingerprint.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"fingerprint.cli.{name}":
                raise


def fail(message: str) -> None:
    """Print a one-line error and exit 2."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def open_zoo(path):
    """``Zoo.open`` for commands that analyse a zoo: says so (one line) when shards are still missing,
    since every score would then describe only the models trained so far."""
    from fingerprint.zoo import Zoo

    zoo = Zoo.open(path)
    planned = len(zoo.manifest.get("planned", []))
    if 0 < len(zoo) < planned:
        err_console.print(f"[yellow]warning:[/] zoo '{escape(str(zoo.path))}' has {len(zoo)} of its {planned} planned models "
                          "(an interrupted sweep? `fingerprint sweep ... --resume` finishes it); using those", highlight=False,
                          soft_wrap=True)
    return zoo


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one ``warning: ...`` line, not Python's file/line/source form."""
    err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def main() -> None:
    import warnings

    warnings.showwarning = _show_warning
    _register()
    try:
        app()
    except UserError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except OSError as e:  # a path that is a file where a directory is wanted, unwritable, ... : the user's to fix
        where = f" '{e.filename}'" if e.filename else ""
        err_console.print(f"[bold red]error:[/] {escape(e.strerror or type(e).__name__)}{escape(where)}", highlight=False, soft_wrap=True)
        sys.exit(2)
