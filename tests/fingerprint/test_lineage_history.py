"""`fingerprint lineage` with checkpoint histories: spawned children's parents and direction from the
fork point, `--no-history` for the final-weight forest, and an import without histories."""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

from fingerprint import Zoo
from fingerprint.lineage import lineage
from tests.conftest import run_cli


def test_spawned_children_are_placed_by_their_fork_point(tiny_zoo, tmp_path):
    zoo = Zoo.open(tiny_zoo)
    r = lineage(zoo, n_perm=999)
    assert r["history"] == {"used": True, "n_continuing": 16}  # 8 spawned + 8 fine-tuned children
    kind = r["by_evidence"]["exact"]["by_kind"]
    assert kind["spawn"] == {"parent_accuracy": 1.0, "direction_accuracy": 1.0}
    assert kind["finetune"]["direction_accuracy"] == 1.0 and kind["finetune"]["parent_accuracy"] >= 0.75
    parent_of = {c: p for p, c, _ in r["edges"]}
    truth = dict(zip(zoo.model_ids, zoo.models["parent_id"].tolist()))
    assert all(parent_of[m] == truth[m] for m in zoo.model_ids if ">s10" in m)
    assert not any(m in parent_of for m in zoo.model_ids if ">" not in m)  # the seed grid: roots, siblings too
    # --no-history: the final-weight forest, as before histories were read
    out = tmp_path / "old.json"
    res = run_cli("lineage", tiny_zoo, "--no-history", "--n-perm", "999", "--json", out, env={"COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    old = json.loads(out.read_text())
    assert old["history"] == {"used": False, "n_continuing": None}
    assert old["edges"] == lineage(Zoo.open(tiny_zoo), n_perm=999, history=False)["edges"]
    assert len(old["edges"]) == len(zoo) - 4  # one tree per family, as without histories
    assert old["by_evidence"]["exact"]["by_kind"]["spawn"]["parent_accuracy"] < 1.0
    assert r["sibling_or_child"] == [] and set(old["sibling_or_child"]) <= set(zoo.model_ids)
    if old["sibling_or_child"]:
        assert "final weights cannot tell which" in " ".join(res.stdout.split())


def test_an_import_without_histories_falls_back_to_final_weights(tmp_path):
    """12 state dicts, 4 initializations x 3 independently perturbed copies, one checkpoint each."""
    g = torch.Generator().manual_seed(0)
    mods = []
    for _ in range(4):
        base = [torch.randn(s, generator=g) / s[-1] ** 0.5 for s in ((16, 6), (16,), (2, 16), (2,))]
        for _ in range(3):
            m = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
            with torch.no_grad():
                for p, q in zip(m.parameters(), base):
                    p.copy_(q + 0.3 * torch.randn(q.shape, generator=g) / q.shape[-1] ** 0.5)
            mods.append(m)
    zoo = Zoo.from_modules(mods, out=tmp_path / "imp", metadata={"family": [str(i // 3) for i in range(12)]},
                           probes={"in_dist": torch.randn(8, 6, generator=g)})
    r = lineage(zoo, lineage_column="family", n_perm=999)
    assert r["history"] == {"used": False, "n_continuing": None}
    assert r["truth"]["shared_init_power"] == 1.0 and r["truth"]["parent_accuracy"] is None
    assert sorted(len(f) for f in r["families"]) == [3, 3, 3, 3] and len(r["edges"]) == 8
    assert r["edges"] == lineage(zoo, lineage_column="family", n_perm=999, history=False)["edges"]
    assert np.isfinite([e[2] for e in r["edges"]]).all()
    # independent copies of one init are siblings: a tree path g -> p -> v through them is marked
    parent_of = {c: p for p, c, _ in r["edges"]}
    assert set(r["sibling_or_child"]) == {v for v, p in parent_of.items() if p in parent_of}


def test_evidences_with_the_same_families_share_one_history_measurement(monkeypatch):
    """The checkpoint distances are measured once per distinct partition, not once per evidence."""
    import fingerprint.lineage as fl

    calls = []
    monkeypatch.setattr(fl, "_history", lambda parts, fam: calls.append(fam) or (fam, fam, fam))
    same = np.array([0, 0, 1, 1, 2])
    h = fl._histories([], {"exact": same, "matched": same.copy(), "fp": np.array([0, 1, 1, 2, 2])})
    assert len(calls) == 2 and h["exact"] is h["matched"] and h["fp"] is not h["exact"]
