"""The ``fingerprint`` command line. Only this package touches argv and the terminal.

Commands live in sibling modules (``train``, ``extract``, ``analyze``, ...) that register themselves on
``app``. Every :class:`~training.core.errors.UserError`, and every usage error of click's own (an
unknown option, a missing argument), becomes a one-line ``error: ...`` on stderr and exit status 2.

Exit statuses, the same for every command (README, "A tour of the CLI"):

* 0: done;
* 2: refused, nothing done: a usage error or a problem with the user's input (a ``UserError``, which
  names the culprit and what to do); also when a command that works on several parts (``extract``'s
  fingerprints) finished none of them, each refused for such a reason;
* 1: done in part: some parts failed, each said in its own line, and the rest were written
  (``extract`` with some fingerprints failed, ``cluster`` with some fingerprints failed,
  ``import --skip-bad`` with some checkpoints left out, ``inspect`` of a zoo with corrupt shards),
  or an unexpected exception (a traceback: a bug);
* 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import _thread
import functools
import signal
import sys
import threading
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from training.core.errors import UserError

app = typer.Typer(
    name="fingerprint",
    help="Train seed-varied populations, fingerprint them, and test whether fingerprints track deep differences or initialization noise.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
# the exceptions of the click that typer runs on (recent typers vendor their own copy)
_click = sys.modules[typer.BadParameter.__module__]
_NO_ARGS_IS_HELP = getattr(_click, "NoArgsIsHelpError", ())  # click >= 8.2
err_console = Console(stderr=True)


def _flags_as_flags() -> None:
    """Recent typers print a flag's type (``--resume <bool>``) in help; a flag takes no value, so show none."""
    core = sys.modules.get("typer.core")
    option = getattr(core, "TyperOption", None)
    show = getattr(option, "display_type_rich", None)
    if show is None or getattr(show, "_flags_as_flags", False):
        return

    def display_type_rich(self, ctx):  # noqa: ANN001 (typer's signature)
        return None if getattr(self, "is_flag", False) and not getattr(self, "count", False) else show(self, ctx)

    display_type_rich._flags_as_flags = True
    option.display_type_rich = display_type_rich


_flags_as_flags()

_COMMAND_MODULES = ("train", "extract", "analyze", "extras", "search", "lineage", "transfer", "goodhart")


def _register() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        try:
            importlib.import_module(f"fingerprint.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"fingerprint.cli.{name}":
                raise


def esc(value: object) -> str:
    """``value`` as literal text inside rich markup. Every string that comes from the user or from a
    file (paths, config and column names, labels, model ids, extractor and plugin names) goes through
    this before it reaches a ``console.print``, a table cell or title, or a progress description:
    ``[/x]`` in a name would otherwise be read as a closing tag, and rich raises on it."""
    return escape(str(value))


def print_error(message: str) -> None:
    """One ``error: ...`` line on stderr, the message printed verbatim (not read as rich markup)."""
    err_console.print(f"[bold red]error:[/] {esc(message)}", highlight=False, soft_wrap=True)


def print_warning(message: str, source: str | None = None) -> None:
    """One ``warning: ...`` line on stderr, verbatim; ``warning (from torch): ...`` for a library's."""
    head = "warning:" if source is None else f"warning (from {esc(source)}):"
    err_console.print(f"[yellow]{head}[/] {esc(message)}", highlight=False, soft_wrap=True)


def fail(message: str) -> None:
    """Print a one-line error and exit 2."""
    print_error(message)
    raise typer.Exit(2)


def open_zoo(path):
    """``Zoo.open`` for commands that analyse a zoo: says so (one line) when shards are still missing,
    since every score would then describe only the models trained so far."""
    from training.core.store import Zoo  # deferred for start-up time (torch)

    zoo = Zoo.open(path)
    planned = len(zoo.manifest.get("planned", []))
    zoo.require_models()
    if 0 < len(zoo) < planned:
        print_warning(f"zoo '{zoo.path}' has {len(zoo)} of its {planned} planned models "
                      "(an interrupted sweep? `fingerprint sweep ... --resume` finishes it); using those")
    return zoo


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one ``warning: ...`` line, not Python's file/line/source form; one an installed library
    raised says whose (``warning (from torch): ...``: an outside audit of the seventeenth session read
    torch's own note on ``weight_norm`` batching as the toolkit's)."""
    # a library's own warning class names it when the warning points into our code (outside audit 117: scipy's
    # ClusterWarning, raised with a stacklevel that lands in the toolkit, read as the toolkit's own)
    own = (getattr(category, "__module__", "") or "").split(".")[0]
    lib = own if own not in ("", "builtins", "fingerprint", "training", "analysis", "__main__") else None
    print_warning(str(message), _library(str(filename)) or lib)


def _library(filename: str) -> str | None:
    """The installed package a file belongs to (``torch`` for ``.../site-packages/torch/nn/...``), else ``None``."""
    parts = Path(filename).parts
    for i, part in enumerate(parts[:-1]):
        if part in ("site-packages", "dist-packages"):
            name = parts[i + 1].split(".")[0]
            return None if name in ("fingerprint", "training", "analysis") else name
    return None


_INTERRUPTED: list[bool] = []  # set by Ctrl-C (SIGINT): an exception after it is the interruption's, not a bug
_INTERRUPT_SAID: list[bool] = []  # set by a command that said what its interruption kept (interrupt_said)


def interrupt_said() -> None:
    """Called by a command that printed its own line for Ctrl-C before its ``typer.Exit(130)``: :func:`main` then
    adds no ``interrupted`` line of its own."""
    _INTERRUPT_SAID.append(True)


def _on_interrupt(signum, frame) -> None:
    """Ctrl-C: remembered, then Python's own ``KeyboardInterrupt``. A library interrupted inside its C
    code can raise something else on the way out (an outside audit, 70: matplotlib's ``ValueError:
    Invalid bounding box`` and a traceback with exit status 1); :func:`main` reads the flag."""
    _INTERRUPTED.append(True)
    signal.default_int_handler(signum, frame)


def _unraisable(unraisable, previous=sys.__unraisablehook__) -> None:
    """``sys.unraisablehook`` while a command runs: a Ctrl-C raised where Python ignores exceptions (a weakref
    callback during garbage collection, such as matplotlib's ``WeakSet`` entries while a report writes its figures)
    was printed as "Exception ignored in ..." and lost, and the command ran on to the end with status 0 (found in the
    forty-first session, beside outside audit 117's F2: one Ctrl-C in three during a report's figures). It is delivered
    again a moment later, where it stops the command. Anything else goes to ``previous``, the hook the caller had."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _INTERRUPTED:
        resend = threading.Timer(0.05, _thread.interrupt_main)  # this process's main thread, as a Ctrl-C would
        resend.daemon = True  # a command that ends meanwhile is not held up by it (main() cancels it: _cancel_resend)
        _RESEND.append(resend)
        resend.start()
        return
    previous(unraisable)


_RESEND: list[threading.Timer] = []  # the Ctrl-Cs _unraisable sends again, until they are sent or main() ends


def _cancel_resend() -> bool:
    """Cancel the Ctrl-Cs :func:`_unraisable` has not sent again yet (review 119: one fired 50 ms after ``main()``
    returned into its caller, or was lost at the interpreter's exit); whether any was still to be sent."""
    pending = [t for t in _RESEND if not t.finished.is_set()]
    for t in _RESEND:
        t.cancel()
    _RESEND.clear()
    return bool(pending)


def main() -> None:
    import warnings

    warnings.showwarning = _show_warning
    _INTERRUPTED.clear()  # this command's Ctrl-C only (tests run several commands in one process)
    _INTERRUPT_SAID.clear()
    # only where Ctrl-C interrupts anyway: a command started with it ignored (`fingerprint sweep ... &` in a script,
    # a supervisor's child) keeps ignoring it (found by review)
    installed = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        installed = (signal.signal(signal.SIGINT, _on_interrupt), sys.unraisablehook)
        sys.unraisablehook = functools.partial(_unraisable, previous=installed[1])
    try:
        _run()
    except SystemExit as e:  # a Ctrl-C lost and not yet sent again when the command ended: it was interrupted
        if _cancel_resend() and e.code != 130:
            _exit_interrupted()
        raise
    finally:
        _cancel_resend()
        if installed is not None:  # the caller's own (main() run in a test or a notebook)
            signal.signal(signal.SIGINT, installed[0])
            sys.unraisablehook = installed[1]


def _run() -> None:
    """:func:`main`'s command, ended by ``sys.exit`` with its status (or an exception: a bug's traceback)."""
    _register()
    try:
        code = app(standalone_mode=False)  # click's own errors come here, to be shown as one line
    except _NO_ARGS_IS_HELP as e:  # a bare `fingerprint`: the help, as click shows it
        e.show()
        sys.exit(e.exit_code)
    except _click.UsageError as e:  # unknown option, missing argument, a value not among the choices
        where = e.ctx.command_path if e.ctx is not None else "fingerprint"
        print_error(f"{e.format_message()} (see '{where} --help')")
        sys.exit(e.exit_code)
    except _click.ClickException as e:
        print_error(e.format_message())
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C outside a sweep (which says what it kept itself)
        _exit_interrupted()
    except UserError as e:
        print_error(str(e))
        sys.exit(e.exit_code)
    except Exception as e:
        if _INTERRUPTED:  # whatever Ctrl-C left behind (an OSError too) is the interruption's, not a bug
            _exit_interrupted()
        if not isinstance(e, OSError):
            raise
        # a path that is a file where a directory is wanted, unwritable, ... : the user's to fix
        where = f" '{e.filename}'" if e.filename else ""
        print_error(f"{e.strerror or type(e).__name__}{where}")
        sys.exit(2)
    if code == 130 and _INTERRUPTED and not _INTERRUPT_SAID:  # typer 0.2x turns Ctrl-C into a silent exit code 130
        _exit_interrupted()  # (outside audit 117: `report` interrupted printed nothing)
    sys.exit(code if isinstance(code, int) else 0)  # typer.Exit's code, or 0


def _exit_interrupted() -> None:
    """Ctrl-C's one line and status 130."""
    err_console.print("interrupted", highlight=False)
    sys.exit(130)
