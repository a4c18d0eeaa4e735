"""Imported convolutional populations, trained with plain PyTorch as a user would, through the CLI.

    python scripts/imported_cnn.py OUT [--rule none|family|order] [--families 8] [--orders 3]

Writes ``OUT/ckpts/*.pt`` (state dicts) and ``OUT/models.csv`` (``model_id``, ``family``, ``order``,
``rule``, ``coin``, ``acc``), then runs ``fingerprint import``, ``extract`` (the default set) and
``report`` (``--lineage family``; once without a label, once with ``--label rule``, or ``--label
coin`` for the null) and prints each report's scorecard. Nothing here is a built-in task: a small
CNN (two 3x3 convolutions, max-pool, a linear readout) on 8x8 images in [0, 1], four classes from
the brightness of two image halves.

- ``--rule none``: every model learns one rule (a null: no deep difference). ``coin`` is a random
  two-valued column, to score as a label that means nothing.
- ``--rule family``: the first half of the init families learn rule ``a`` (top half and left half),
  the others rule ``b`` (bottom half and left half): a deep difference decided by the seed.
- ``--rule order``: the rule is decided by the data order (every family holds both rules).

The factory, probe sets and data are this module's ``make``, ``probes`` and ``data``; the
commands run with ``scripts/`` on ``PYTHONPATH``. docs/results.md ("An imported CNN") quotes it.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

RULES = ("a", "b")


def make() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 4))


def probes() -> dict[str, torch.Tensor]:
    """``in_dist``: training-like images; ``ood``: Gaussian images three times as bright. [96, 1, 8, 8] each."""
    g = torch.Generator().manual_seed(0)
    return {"in_dist": torch.rand(96, 1, 8, 8, generator=g), "ood": 3 * torch.randn(96, 1, 8, 8, generator=g)}


def labels(x: torch.Tensor, rule: str) -> torch.Tensor:
    """Rule ``a`` reads the top half's brightness, ``b`` the bottom half's; both read the left half. [n]"""
    rows = x[:, 0, :4, :] if rule == "a" else x[:, 0, 4:, :]
    return (rows.mean((1, 2)) > 0.5).long() * 2 + (x[:, 0, :, :4].mean((1, 2)) > 0.5).long()


def data() -> tuple[torch.Tensor, torch.Tensor]:
    """Training images ``[1024, 1, 8, 8]`` and rule ``a``'s labels ``[1024]``."""
    x = torch.rand(1024, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    return x, labels(x, "a")


def train(out: Path, rule_by: str, families: int, orders: int, epochs: int = 15) -> None:
    x, _ = data()
    ys = {r: labels(x, r) for r in RULES}
    coin = torch.randint(0, 2, (families * orders,), generator=torch.Generator().manual_seed(2)).tolist()
    (out / "ckpts").mkdir(parents=True, exist_ok=True)
    rows = []
    for family in range(families):
        for order in range(orders):
            rule = {"none": "a", "family": RULES[2 * family // families], "order": RULES[order % 2]}[rule_by]
            torch.manual_seed(1000 + family)  # the init: shared by a family
            model = make()
            opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            g = torch.Generator().manual_seed(7 * order + 3)  # the data order
            for _ in range(epochs):
                for b in torch.randperm(len(x), generator=g).split(64):
                    opt.zero_grad()
                    nn.functional.cross_entropy(model(x[b]), ys[rule][b]).backward()
                    opt.step()
            name = f"f{family}-o{order}"
            torch.save(model.state_dict(), out / "ckpts" / f"{name}.pt")
            with torch.no_grad():
                acc = (model(x).argmax(1) == ys[rule]).float().mean().item()
            rows.append({"model_id": name, "family": family, "order": order, "rule": rule,
                         "coin": "ht"[coin[len(rows)]], "acc": round(acc, 3)})
    with open(out / "models.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--rule", default="family", choices=["none", "family", "order"])
    ap.add_argument("--families", type=int, default=8)
    ap.add_argument("--orders", type=int, default=3)
    args = ap.parse_args()
    train(args.out, args.rule, args.families, args.orders)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    mod, zoo = Path(__file__).stem, str(args.out / "zoo")
    label = "coin" if args.rule == "none" else "rule"
    commands = [
        ["import", str(args.out / "ckpts"), "--arch", f"{mod}:make", "--probes", f"{mod}:probes",
         "--data", f"{mod}:data", "--metadata", str(args.out / "models.csv"), "--out", zoo],
        ["extract", zoo, "--arch", f"{mod}:make"],
        ["report", zoo, "-o", str(args.out / "label-free.html"), "--lineage", "family",
         "--json", str(args.out / "label-free.json")],
        ["report", zoo, "-o", str(args.out / "labelled.html"), "--lineage", "family", "--label", label,
         "--json", str(args.out / "labelled.json")],
    ]
    for c in commands:
        print("$ fingerprint " + " ".join(c), flush=True)
        subprocess.run([sys.executable, "-c", "from fingerprint.cli import main; main()", *c], env=env, check=True)


if __name__ == "__main__":
    main()
