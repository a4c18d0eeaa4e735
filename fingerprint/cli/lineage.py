"""``fingerprint lineage``: which models share an initialization, with p-values, and their tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from fingerprint.cli import app, console, esc
from fingerprint.cli import options as o
from training.core.outputs import check_output


@app.command("lineage")
def lineage_cmd(
    zoo_path: Path = typer.Argument(..., metavar="ZOO"),
    fp: Optional[List[str]] = typer.Option(None, "--fp", help="Fingerprint for the behavioural test (repeatable; computed if not cached)."),
    alpha: float = typer.Option(0.05, "--alpha", help="Benjamini-Hochberg level across pairs."),
    lineage_column: Optional[str] = typer.Option(None, "--lineage", help="Model column naming the true families (default: init_seed)."),
    max_pairs: int = typer.Option(200_000, "--max-pairs", help="Test a uniform sample of this many pairs when there are more."),
    n_perm: int = typer.Option(99_999, "--n-perm", help="Random permutations in the exact test's null (p-value floor 1/(n+1) per layer)."),
    orient: str = typer.Option("auto", "--orient", help="auto | kurtosis | norm: the weight statistic that orients tree edges."),
    weights: Optional[bool] = typer.Option(None, "--weights/--no-weights", help="Run the weight-based tests even when estimated to take over 10 minutes / skip them (behavioural only). Default: run them unless that slow.", show_default=False),
    no_history: bool = typer.Option(False, "--no-history", help="Build the forest from final weights even when the zoo stores checkpoint histories."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write pairs, families, tree and scores as JSON."),
    candidates: Optional[str] = typer.Option(None, "--candidates", help="COLUMN=VALUE (e.g. kind=base): the models that may be "
                                             "the others' origin; each other model gets its nearest one (lowest pair p-value), significant or not."),
    trust_code: bool = o.TRUST_OPTION,
    arch: Optional[str] = o.ARCH_OPTION,
    plugin: Optional[List[str]] = o.PLUGIN,
):
    """Calibrated shared-initialization tests for every pair, the families, and the lineage forest."""
    o.load_plugin_options(plugin)
    from fingerprint.lineage import lineage  # deferred for start-up time (torch)
    from fingerprint.tables import (  # deferred for start-up time
        FIRST_CHECKPOINT,
        model_table,
    )
    from training.core.store import write_json  # deferred for start-up time

    if json_out:
        check_output(json_out, {"zoo": zoo_path}, option="--json", kind="file")
    zoo = o.open_for_models(zoo_path, trust_code, arch)
    if not console.is_terminal:  # a status spinner shows nothing in a log file: say it once
        console.print("testing pairs for a shared initialization", highlight=False)
    with console.status("testing pairs for a shared initialization"):
        r = lineage(zoo, fp or [], alpha, lineage_column, max_pairs, n_perm, orient, weights,
                    history=not no_history, candidates=candidates)
    title, legend = evidence_lines(r, alpha)
    console.print(title, highlight=False, markup=False, soft_wrap=True)
    console.print(evidence_table(r, alpha))
    console.print(legend, style="dim", highlight=False, markup=False, soft_wrap=True)
    note = weight_note(r, zoo) if weights is not False else None
    if note:
        console.print(note, style="yellow", highlight=False, markup=False, soft_wrap=True)
    ori = r["orientation"]
    if r["history"]["used"]:
        console.print(f"* primary evidence; tree edges from checkpoint histories ({r['history']['n_continuing']} models "
                      f"start on another's trajectory); {_edges(len(r['edges']))}, {family_sizes(r['families'])}")
    else:
        assumed = ", MoTHer's default" if ori["statistic"] == "kurtosis" else ", assumed"  # an outside audit (78): norm too
        console.print(f"* primary evidence; tree edges oriented by weight {ori['statistic']} "
                      f"({'rising' if ori['sign'] > 0 else 'falling'} with training"
                      + (f" in {100 * ori['consistency']:.0f}% of models" if ori["consistency"] is not None else
                         f"{assumed}: no checkpoint histories to measure it")
                      + f"); {_edges(len(r['edges']))}, {family_sizes(r['families'])}")
        against = orientation_note(ori)
        if against and r["edges"]:
            console.print(against, style="yellow", highlight=False, markup=False, soft_wrap=True)
    absent = r.get("parents_absent") or 0
    if absent and r["edges"]:  # an outside audit (77): 12 sibling edges drawn as parent and child, 5 marked
        console.print(f"{absent} model{'s' if absent != 1 else ''}' recorded parents (parent_id) are not in the zoo: the "
                      "forest joins only models it holds, so siblings of an absent base are drawn as parent and child of "
                      "one another (the table's false edges count them)", style="yellow", highlight=False, markup=False,
                      soft_wrap=True)
    chained = r.get("sibling_or_child") or []
    if chained:
        console.print(f"{len(chained)} of the forest's models ({', '.join(chained[:4])}{', ...' if len(chained) > 4 else ''}) are "
                      "no further from their tree grandparent than their tree parent is: each may be that parent's "
                      "sibling (fine-tunes of one base on one task are nearer each other than their base, and the tree "
                      "chains them) or its child started partway through its training; final weights cannot tell which. "
                      "If you know the bases, --candidates COLUMN=VALUE ranks them for every model (docs/lineage.md, "
                      "'Sibling or child')", style="yellow", highlight=False, markup=False, soft_wrap=True)
    share = r.get("related_share")
    if share is not None and share > 0.05 and any(e not in ("exact", "matched") for e in r["by_evidence"]):
        console.print(f"{100 * share:.1f}% of the tested pairs are relatives by the lineage column: more than the 5% tail "
                      "the behavioural tests' null is fitted to, so that null is too wide and BH calls few pairs; rank "
                      "instead (--candidates COLUMN=VALUE), or test more families with fewer models each "
                      "(docs/lineage.md)", style="yellow", highlight=False, markup=False, soft_wrap=True)
    for line in nearest_lines(r):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    left = left_out(r)
    if left:
        console.print(left, highlight=False, markup=False, soft_wrap=True)
    for line in two_in_one_lines(r):
        console.print(line, style="yellow", highlight=False, markup=False, soft_wrap=True)
    if r["evidence"] == "exact":
        what = (f"the recovered {_families(len(r['families']))}" if r["families"] else  # not "0 families" (audit 80)
                "that no two models share an initialisation (each its own family)")
        console.print(f"stored {what} in the zoo (results/lineage.json): "
                      "`report` and `cluster` use the recovered families as the lineage (column recovered_family) when the zoo's own "
                      "init_seed is missing or the same for every model"
                      + ("; this zoo's bit-identical first checkpoints give its families exactly, and come first "
                         "(first_checkpoint_family)" if FIRST_CHECKPOINT in model_table(zoo) else ""))
    else:
        console.print(not_stored(r, json_out, FIRST_CHECKPOINT in model_table(zoo), lineage_column), highlight=False,
                      markup=False, soft_wrap=True)
    if json_out:
        write_json(json_out, r)
        console.print(f"wrote [bold]{esc(json_out)}[/]")


def orientation_note(ori: dict) -> str | None:
    """A warning when the statistic that orients the forest moves against the recorded parents (``parent_id``)
    in most of the pairs the zoo holds (at least 3), naming a statistic that moves with them, else ``None``."""
    rec = ori.get("recorded")
    if not rec or rec["n"] < 3:
        return None
    rising = rec["rising"]
    agree = rising[ori["statistic"]] if ori["sign"] > 0 else 1 - rising[ori["statistic"]]
    if agree >= 0.5:
        return None
    better = max(rising, key=lambda k: rising[k])
    n, with_it = rec["n"], round(rec["n"] * agree)
    hint = (f" (weight {better} rises in {round(n * rising[better])} of them: --orient {better})" if rising[better] > 0.5 else "")
    return (f"the forest orients its edges by weight {ori['statistic']} {'rising' if ori['sign'] > 0 else 'falling'} from parent "
            f"to child, which holds in only {with_it} of the {n} recorded parent_id pairs the zoo holds{hint}: its trees "
            "may point the wrong way (dir. above); the recorded parents score the forest, they do not orient it")


def weight_note(r: dict, zoo: Any) -> str | None:
    """Why the table has no weight evidence (``exact``, ``matched``), or ``None`` when it has some: said,
    not silent (an outside audit, 74: ``nn.TransformerEncoder`` models got the behavioural row alone)."""
    if "exact" in r["by_evidence"]:
        return None
    if r.get("weights_skipped"):
        return f"no weight evidence (exact, matched): {r['weights_skipped']}"
    if (zoo.family_spec or {}).get("arch") == "hf":  # its users cannot add a method to transformers' classes
        return ("no weight evidence (exact, matched): this Hugging Face architecture has no MLP units the toolkit can "
                "align (docs/import.md names those that have)")
    from fingerprint.extractors.mechanistic import stop_hint  # deferred: start-up
    from fingerprint.population import family_for  # deferred: start-up

    return ("no weight evidence (exact, matched): the architecture declares no hidden-unit permutation groups"
            + (stop_hint(family_for(zoo)) or "; give the module a hidden_permutable() method (docs/extractors.md, "
               "'family') for the weight tests"))


def evidence_table(r: dict, alpha: float):
    """One row per kind of evidence. Fits 80 columns: number columns never wrap, the evidence name
    folds onto a second line rather than being cut (``anomalo…`` named nothing); the title and the
    legend are :func:`evidence_lines`, printed apart (a table's title and caption are cut at its width:
    an outside audit, 73, read "alpha 0" and lost the last column at 80 columns)."""
    from rich import box
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False, show_edge=False)  # the box's own space between columns
    names = [esc(n) + (" *" if n == r["evidence"] else "") for n in r["by_evidence"]]
    for col in ("evidence", "related", "families", "merged", "FPR", "power", "BH FDP", "parent", "dir.", "false"):
        if col == "evidence":
            t.add_column(col, overflow="fold", ratio=1, min_width=min(10, max(map(len, names), default=8)))
        else:
            t.add_column(col, justify="right", no_wrap=True)
    f = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    for name, s in zip(names, r["by_evidence"].values()):
        t.add_row(name, f"{s['n_related']:,}", str(s["n_families"]), "–" if s.get("n_merged") is None else str(s["n_merged"]),
                  f(s["shared_init_fpr"]), f(s["shared_init_power"]), f(s["bh_fdp"]), f(s["parent_accuracy"]),
                  f(s["direction_accuracy"]), "–" if s.get("false_edges") is None else str(s["false_edges"]))
    return t


def evidence_lines(r: dict, alpha: float) -> tuple[str, str]:
    """The title above :func:`evidence_table` and the legend below it."""
    return (f"lineage of {r['zoo']}: {r['n_pairs']:,} of {r['n_pairs_total']:,} pairs tested, related when significant "
            f"at alpha {alpha:g} (Benjamini-Hochberg)",
            "FPR, power: the share of unrelated / related pairs at p <= alpha, per test (related and BH FDP: after the "
            "correction); merged: recovered families that join models of different init families; parent, dir.: accuracy of the "
            "recovered parents and of the edges' directions; false: recovered edges that join no recorded parent and "
            "child (parent_id)" + truth_coverage(r))


def truth_coverage(r: dict) -> str:
    """``; scored against the true families of 24 of 24 models (16 took theirs from the parent chain ...)``
    when not every model has one or some took it from a parent (an outside audit, 75: the fine-tunes' pairs
    were left out of the scores and nothing said so), else ``""``."""
    from fingerprint.tables import (  # deferred for start-up time
        FIRST_CHECKPOINT,
        PARENT_TREE,
    )

    k, n, inherited = r.get("truth_models") or 0, r.get("n_models"), r.get("truth_inherited") or 0
    stand_in = {PARENT_TREE: "the parent_id trees", FIRST_CHECKPOINT: "the families of bit-identical first checkpoints"
                }.get(str(r.get("truth_column")))
    if stand_in and k:  # no column records the families: the report's stand-in (an outside audit, 78: FPR, power blank)
        like = r.get("truth_columns") or []  # an outside audit (80): the CSV's family column was there
        name = f"--lineage {like[0]} names them: its values are the same within every tree" if like else "--lineage COLUMN names them"
        return f"; scored against {stand_in} of {k} of {n} models (the lineage column records no families: {name})"
    if not k or (k == n and not inherited):
        return ""
    return (f"; scored against the true families of {k} of {n} models"
            + (f" ({inherited} took theirs from the parent chain, parent_id: a fine-tune is in its base's init family)"
               if inherited else ""))


def _families(n: int) -> str:
    return f"{n} {'family' if n == 1 else 'families'}"


def family_sizes(fams: list[list[str]], most: int = 6) -> str:
    """``14 families: 72, 32 (x2), 16 (x2), 8 (x9) models``: the count and the sizes, largest first
    (:func:`fingerprint.tables.sizes_text`)."""
    from fingerprint.tables import sizes_text  # deferred for start-up time

    sizes = [len(f) for f in fams]
    if len(set(sizes)) == 1:
        return f"{_families(len(sizes))} of {sizes[0]} models"
    return f"{_families(len(sizes))}: {sizes_text(sizes, most)} models" if sizes else _families(0)


def nearest_lines(r: dict) -> list[str]:
    """One line per evidence for ``--candidates``: how many models were placed, and how often the
    nearest candidate is the true parent / of the true family when the zoo knows them."""
    near = r.get("nearest")
    if not near:
        return []
    out = []
    for name, e in near["by_evidence"].items():
        n = len(e["rows"])
        sig = sum(1 for row in e["rows"] if row["p_value"] is not None and row["p_value"] <= r["alpha"])
        truth = "; ".join(f"{what} for {k} of {m}" for what, km in (("the true parent", e["parent_match"]),
                                                                    ("of the true family", e["family_match"])) if km for k, m in [km])
        out.append(f"nearest candidate ({near['candidates']}) of {n} {'model' if n == 1 else 'models'} by {name}: "
                   f"{sig} at p <= {r['alpha']:g}" + (f"; {truth}" if truth else "")
                   + (f"; {e['n_unplaced']} without a tested pair to a candidate (--max-pairs)" if e.get("n_unplaced") else "")
                   + "; each model's nearest and runner-up: --json (nearest)")
    return out


def left_out(r: dict) -> str | None:
    """The significant pairs the family rule left between families (``None``: none)."""
    n = r["by_evidence"][r["evidence"]].get("n_between") or 0
    if not n:
        return None
    return (f"{n} significant {'pair' if n == 1 else 'pairs'} between the recovered families {'was' if n == 1 else 'were'} "
            "left out: a pair joins two models into a family only when they share at least half of their relatives, so "
            "that a few false pairs do not merge families (docs/lineage.md, 'Families')")


def two_in_one_lines(r: dict, most: int = 3) -> list[str]:
    """A line for each recovered family that looks like two joined by chance pairs (``r["two_in_one"]``,
    :func:`analysis.lineage_merges.two_in_one`; the ``most`` largest, then how many more)."""
    found = r.get("two_in_one") or []
    lines = []
    for f in found[:most]:
        a, b = f["parts"]
        lines.append(f"the recovered {f['family']} ({len(a) + len(b)} models) may be two families joined by "
                     f"chance pairs: its models fall into {len(a)} ({', '.join(a[:3])}{', ...' if len(a) > 3 else ''}) and "
                     f"{len(b)} ({', '.join(b[:3])}{', ...' if len(b) > 3 else ''}), related in {100 * f['within']:.0f}% of the "
                     f"pairs within the two and {f['between']} of the {f['pairs']} between (q {f['q_value']:.2g} against one "
                     "family whose pairs are missed at random): a chance pair between two families repeats across their "
                     "relatives, and BH does not hold its rate over such pairs; a chain related only parent to child looks "
                     "the same. It stays one family (docs/lineage.md, 'Two families in one')")
    if len(found) > most:
        lines.append(f"{len(found) - most} more recovered families may be two each (\"two_in_one\" in --json)")
    return lines


def _edges(n: int) -> str:
    return f"{n} {'edge' if n == 1 else 'edges'}"


def not_stored(r: dict, json_out: Optional[Path], first_checkpoints: bool = False, column: Optional[str] = None) -> str:
    """What to do with families recovered from a fingerprint (or the matched weights), which are not
    stored: the next ``report`` has no init families, and says ``too few`` for every fingerprint,
    unless the zoo's bit-identical ``first_checkpoints`` give them (an import with histories)."""
    many = r["by_evidence"][r["evidence"]]["n_families"]
    if first_checkpoints:
        found = (f"the {_families(many)} of two or more models found from '{r['evidence']}' are not stored"
                 if many else f"no two models were found related from '{r['evidence']}'")
        return (f"{found}; `report` and `cluster` take this zoo's families from its bit-identical first checkpoints "
                "(first_checkpoint_family: a copy or a shared initialization seen directly), which come first")
    if not many and column:  # the user named the families' column: the advice is to use it (audit 74)
        return (f"no two models were found related from '{r['evidence']}': no families recovered. `report` and `cluster` "
                f"take the families from the column you named: --lineage {column}")
    if not many:
        return (f"no two models were found related from '{r['evidence']}': no families to use as the lineage. `report` and "
                "`cluster` need init families (an import's near-twin weights stand in when they can be read: docs/lineage.md, "
                "\"Near twins\"), else every label-free verdict is 'too few': name a model column that holds "
                "them with --lineage COLUMN (a column of your --metadata CSV, re-imported), or, if no two models share an "
                "initialisation (each trained from its own seed), say so with --lineage model_id")
    where = f"--json wrote them to {json_out} ('families')" if json_out else "--json OUT writes them ('families')"
    return (f"not stored: the {_families(many)} of two or more models found from '{r['evidence']}' (only the weight test's, "
            "'exact', are stored; testing fingerprints against families a fingerprint found would be circular). "
            "`report` and `cluster` need init families, else every label-free verdict is 'too few': "
            f"{where}; to use them anyway, put them in a column of your --metadata CSV, re-import, and pass --lineage COLUMN")
