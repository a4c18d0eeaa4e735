"""Options and helpers several commands share (one definition each)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from fingerprint.cli import open_zoo
from training.core.errors import PluginError, UserError

TRUST_HELP = ("Allow importing the code this zoo names to run its models (an imported zoo's architecture factory, a "
              "sweep's module:Class task). Only for zoos from a source you trust: a zoo is data, and without this "
              "flag no code it names is ever imported.")
ARCH_HELP = "module:factory that builds an imported zoo's nn.Module: your own code, used instead of the one the zoo names."

MAX_GB_OPTION = typer.Option(None, "--max-gb", envvar="FINGERPRINT_MAX_GB", show_envvar=True,
                             help="Refuse a plan whose checkpoints would take more than this many GB (default 20).")
TRUST_OPTION = typer.Option(False, "--trust-code", help=TRUST_HELP)
ARCH_OPTION = typer.Option(None, "--arch", help=ARCH_HELP)

# the analysis options `cluster` and `report` share (each overrides the zoo's [analysis] section)
METHOD = typer.Option(None, "--method", help="auto | gmm | kmeans | hdbscan | agglomerative | agglomerative-complete (default: config or auto)")
LABEL = typer.Option(None, "--label", help="Ground-truth model column (default: deep_label).")
LINEAGE = typer.Option(None, "--lineage", help="Lineage model column (default: init_seed).")
K = typer.Option(None, "--k", help="Fixed number of basins (default: chosen by BIC / silhouette).")
K_MAX = typer.Option(None, "--k-max", help="Largest k considered (default 8).")
N_BOOT = typer.Option(None, "--n-boot", help="Bootstrap replicates (default 20).")
EMBEDDING = typer.Option(None, "--embedding", help="2-D map: umap | pca (pca skips UMAP's ~25 s one-off compilation).")
SEED = typer.Option(None, "--seed", help="random_state of clustering, bootstrap and maps.")
N_PERM = typer.Option(None, "--n-perm", help="Family-level permutations per p-value and null replicates of the "
                      "label-free tests (default 199: p-value floor 1/(n+1) = 0.005; 0.01 for the groups test, "
                      "which takes the better of two statistics and doubles its p).")
ALPHA = typer.Option(None, "--alpha", help="Significance after Benjamini-Hochberg across the report's fingerprints (default 0.05).")
COMBINE = typer.Option(None, "--combine", help="Also analyse A+B+... concatenated (repeatable).")
STRATA = typer.Option(None, "--strata", help="Model column of a design factor shared across init families, such as a data "
                      "order under another name than data_seed: its effect is lineage, taken out of the label-free tests (repeatable; "
                      "data_seed and kind always are; --strata none takes out nothing, to test a difference they decide).")
COVARIATE = typer.Option(None, "--covariate", help="Model column of a recorded training setting (an optimizer, a batch "
                         "size) taken out of every fingerprint before it is analysed, to ask whether anything beyond it "
                         "differs: each level's mean (numbers of many values: a linear trend) removed; COLUMN:levels or "
                         "COLUMN:trend forces the form (repeatable).")

EXCLUDE = typer.Option(None, "--exclude", help="Model ids left out of the analysis: comma-separated, or @FILE with one "
                       "id a line (repeatable); the report is then of the other models (such as those left when the "
                       "models that did not learn are taken out).")


def exclude_ids(entries: Optional[list[str]]) -> Optional[list[str]]:
    """The model ids of ``--exclude`` entries (``a,b``, or ``@FILE`` of one id a line, blank lines and ``#`` comments
    skipped), in order, once each; ``None`` without entries. A file that cannot be read is a one-line UserError."""
    if not entries:
        return None
    ids: list[str] = []
    for entry in entries:
        if entry.startswith("@"):
            path = Path(entry[1:])
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                raise UserError(f"--exclude {entry}: cannot read '{path}' ({type(e).__name__}: "
                                f"{getattr(e, 'strerror', None) or e}); give model ids, or @FILE of one id a line") from None
            ids += [t for t in (line.split("#", 1)[0].strip() for line in lines) if t]
        else:
            ids += [t.strip() for t in entry.split(",") if t.strip()]
    if not ids:  # audit 99: an empty file analysed every model, unsaid
        raise UserError(f"--exclude {' '.join(entries)!r} names no model id (an empty entry or file); give model ids, "
                        "or leave the option out to analyse every model")
    return list(dict.fromkeys(ids))


PLUGIN = typer.Option(None, "--plugin", help="Import extractors before --fp is read: module:function, or a module whose "
                      "@fingerprint.extractor functions register themselves (repeatable).")


def load_plugin_options(plugins: Optional[list[str]]) -> None:
    """``--plugin`` of a command that takes ``--fp``: the named plugins registered, so that their names
    work in ``--fp`` (an outside audit, 71: only ``extract`` and ``list`` took it, and the other
    commands said ``unknown extractor``)."""
    if not plugins:
        return
    add_cwd_to_path()
    for p in plugins:
        load_plugin_module(p)


def load_plugin_module(p: str) -> None:
    """One ``--plugin``: its extractors registered, or a bare module that registers task classes only
    (``@register_task``: a notebook's sweep names the task by its registered name, and the zoo is read from the command
    line with the module as ``--plugin``; outside audit 121: it was refused as registering no extractor)."""
    from fingerprint.registry import load_plugins  # deferred for start-up time (torch)
    from training.tasks.base import (  # deferred for start-up time
        list_tasks,
        module_tasks,
    )

    before = set(list_tasks())
    try:
        load_plugins(p)  # first: it sees which extractors the import adds (a package re-exporting a submodule's)
    except UserError as e:
        if isinstance(e, PluginError) or ":" in p:  # a broken module, or a module:function that is no extractor
            raise
        if not module_tasks(p) and not set(list_tasks()) - before:  # its own tasks, or others it registers
            raise UserError(f"plugin module '{p}' registers no extractor and no task: decorate functions with "
                            "@fingerprint.extractor(...) or task classes with @register_task, or name one as "
                            "module:function or module:Class") from None


def add_cwd_to_path() -> None:
    """Let a ``module:function`` the user names live in the working directory. Appended, never
    prepended: a file there (in a zoo one has cd'ed into, say) must not shadow an installed module."""
    if str(Path.cwd()) not in sys.path:
        sys.path.append(str(Path.cwd()))


def open_for_models(zoo_path: Path, trust_code: bool = False, arch: Optional[str] = None):
    """``open_zoo`` for commands that may run the zoo's models: with the user's consent to import
    the code it names (``--trust-code``), or with their own architecture factory (``--arch``)."""
    from fingerprint.pipeline import allow_models  # deferred for start-up time (torch)

    add_cwd_to_path()
    return allow_models(open_zoo(zoo_path), trust_code, arch)
