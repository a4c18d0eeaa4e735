"""``fingerprint import SRC --hf --history '{model_id}/checkpoint-{step}'``: each Hugging Face model's
``save_pretrained`` directories along training (a transformers ``Trainer``'s ``checkpoint-N``), built
here from tiny GPT-2 configs (nothing downloaded), imported through the real CLI."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

pytest.importorskip("transformers")

import hf_models as H  # noqa: E402 - tests/hf_models.py, after the skip

import fingerprint  # noqa: E402
from tests.fingerprint.test_hf_import import _quiet_transformers, cli  # noqa: E402,F401 - the fixture, autouse here too

TEMPLATE = "{model_id}/checkpoint-{step}"


@pytest.fixture(scope="module")
def trainer_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hfhist")
    parents = H.history_population(root / "models")
    H.prompts(root / "prompts.txt")
    return root, parents


def test_each_checkpoint_is_imported_bit_for_bit_and_relatives_are_seen_in_the_histories(trainer_dirs, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    root, parents = trainer_dirs
    code, out, err = cli(capsys, "import", root / "models", "--hf", "--history", TEMPLATE, "--probes-text",
                         root / "prompts.txt", "--out", tmp_path / "zoo")
    assert code == 0, err
    assert "imported 6 models" in out
    zoo = fingerprint.Zoo.open(tmp_path / "zoo")
    assert zoo.model_ids == sorted(parents) and zoo.steps == [0, 10, 20]
    final = dict(zip(zoo.model_ids, zoo.models["final_step"]))
    assert final == {m: 10 if p else 20 for m, p in parents.items()}  # each model's highest step is its final one
    assert sorted(zoo.models_at(20)) == ["base0", "base1", "base2"]
    saved = dict(AutoModelForCausalLM.from_pretrained(str(root / "models" / "base1" / "checkpoint-10")).named_parameters())
    got = zoo.params(10, ["base1"])
    assert set(got) == set(saved)
    for name, t in saved.items():
        assert torch.equal(got[name][0], t.detach().float()), name

    # a fine-tune's first checkpoint is a copy of its base's last: the families report, cluster and forecast use
    from fingerprint.tables import FIRST_CHECKPOINT, model_table

    fam = dict(zip(zoo.model_ids, model_table(zoo)[FIRST_CHECKPOINT]))
    assert all(fam[m] == fam[p] for m, p in parents.items() if p) and len({fam[f"base{b}"] for b in range(3)}) == 3
    # lineage's weight tests (GPT-2's MLP units, inferred) find each base with its fine-tune, and it says that the
    # bit-identical first checkpoints give the families exactly and come first
    code, out, err = cli(capsys, "lineage", tmp_path / "zoo", "--fp", "anomalous-inputs")
    assert code == 0, err
    flat = " ".join(out.split())
    assert "exact * 3 3" in flat and "3 edges, 3 families of 2 models" in flat
    assert "bit-identical first checkpoints give its families exactly, and come first" in flat and "need init families" not in flat


def test_history_errors_name_the_model_and_step(trainer_dirs, tmp_path, capsys):
    root, _ = trainer_dirs
    src = tmp_path / "models"
    shutil.copytree(root / "models", src)
    code, _, err = cli(capsys, "import", src, "--hf", "--history", "{model_id}/step_{step}.pt", "--out", tmp_path / "zoo")
    assert code == 2 and "names save_pretrained directories, not files" in err and err.strip().count("\n") == 0

    cfg = src / "base2" / "checkpoint-10" / "config.json"  # an earlier checkpoint of another architecture
    c = json.loads(cfg.read_text())
    c["n_layer"] = 1
    cfg.write_text(json.dumps(c))
    code, _, err = cli(capsys, "import", src, "--hf", "--history", TEMPLATE, "--out", tmp_path / "zoo")
    assert code == 2 and "model 'base2' at step 10" in err and "n_layer = 1" in err, err
    assert err.strip().count("\n") == 0 and not (tmp_path / "zoo").exists()

    shutil.rmtree(src / "base2" / "checkpoint-10")  # back to one architecture; a final save beside the checkpoints
    H.save(H.model("gpt2", seed=9), src / "base2")
    code, out, err = cli(capsys, "import", src, "--hf", "--history", TEMPLATE, "--out", tmp_path / "zoo")
    assert code == 0, err
    assert "no --history" in " ".join(out.split()) and "'base2'" in out and "not imported" in out


def test_the_tokenizer_may_sit_in_the_runs_own_directory(trainer_dirs, tmp_path, capsys):
    """A Trainer writes the tokenizer into ``checkpoint-N`` only when it was given one; the usual place is the run's
    own directory, beside the checkpoints (found by review: the import said no model had tokenizer files)."""
    root, parents = trainer_dirs
    src = tmp_path / "models"
    shutil.copytree(root / "models", src)
    for f in src.glob("*/checkpoint-*/*"):
        if f.name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            f.unlink()
    from fingerprint.hf_import import _digest

    assert not any(_digest(d) for d in src.glob("*/checkpoint-*"))  # no checkpoint holds a tokenizer now
    H.save_tokenizer(src / "base0")  # one run's own directory holds it
    code, out, err = cli(capsys, "import", src, "--hf", "--history", TEMPLATE, "--out", tmp_path / "zoo")
    assert code == 0, err
    assert fingerprint.Zoo.open(tmp_path / "zoo").family_spec["tokenizer"]["from_model"] == "base0"
