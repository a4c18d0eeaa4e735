"""``fingerprint import SRC --hf``: tiny GPT-2, GPT-NeoX and Llama models built here from configs
(seeded random inits, short fine-tunes, a word-level tokenizer written here; nothing downloaded),
saved with ``save_pretrained``, imported through the real CLI and fingerprinted."""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import hf_models as H  # noqa: E402 - tests/hf_models.py, after the skip

import fingerprint  # noqa: E402
from fingerprint.batch import ModelBatch  # noqa: E402
from fingerprint.cli import main  # noqa: E402
from fingerprint.extraction import extract  # noqa: E402
from fingerprint.hf_import import RARE_SET  # noqa: E402


@pytest.fixture(autouse=True)
def _quiet_transformers():
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
    yield


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run the installed command's entry point in this process (transformers is imported once per session)."""
    old = sys.argv
    sys.argv = ["fingerprint", *map(str, args)]
    try:
        with warnings.catch_warnings():
            main()
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def gpt2_pop(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    parents = H.population(root / "models", "gpt2")
    H.prompts(root / "prompts.txt")
    H.prompts(root / "ood.txt", n=8, seed=1)
    with open(root / "meta.csv", "w") as f:
        f.write("model_id,parent,family\n" + "".join(f"{m},{p},{(p or m)[4]}\n" for m, p in parents.items()))
    return root, parents


@pytest.fixture(scope="module")
def gpt2_zoo(gpt2_pop, tmp_path_factory):
    root, _ = gpt2_pop
    out = tmp_path_factory.mktemp("zoo") / "zoo"
    from fingerprint.hf_import import import_hf

    import_hf(root / "models", out, [str(root / "prompts.txt"), f"ood={root / 'ood.txt'}"], root / "meta.csv")
    return out


def test_cli_import_then_three_fingerprints_find_each_fine_tunes_base(gpt2_pop, tmp_path, capsys):
    root, parents = gpt2_pop
    code, out, err = cli(capsys, "import", root / "models", "--hf", "--out", tmp_path / "zoo", "--probes-text",
                         root / "prompts.txt", "--probes-text", f"ood={root / 'ood.txt'}", "--metadata", root / "meta.csv")
    assert code == 0, err
    assert "imported 6 models" in out
    zoo = fingerprint.Zoo.open(tmp_path / "zoo")
    assert zoo.model_ids == sorted(parents)  # ids are the directory names
    assert list(zoo.models["parent"]) == [parents[m] for m in zoo.model_ids]  # the CSV joined on them
    spec = zoo.family_spec
    assert spec["arch"] == "hf" and spec["config"]["model_type"] == "gpt2" and spec["tokenizer"]["padding"] == "left"
    probes = fingerprint.population.task_for(zoo)
    assert set(probes.probe_names()) == {"in_dist", "ood", RARE_SET}
    x = probes.probes("in_dist")
    assert x.dtype == torch.long and x.shape == (12, spec["input_shape"][0])
    assert (x[:, 0] == spec["pad_id"]).any() and not (x[:, -1] == spec["pad_id"]).any()  # padded on the left
    assert spec["rare_tokens"][0] == 63 and 63 not in x  # embedding rows the tokenizer never produces come first

    code, out, err = cli(capsys, "extract", tmp_path / "zoo", "--fp", "probe-outputs", "--fp", "anomalous-inputs",
                         "--fp", "weight-spectra", "--fp", "cka")  # no --trust-code: the zoo names no code
    assert code == 0, err
    results = {r.name: r for r in extract(zoo, ["probe-outputs", "anomalous-inputs", "weight-spectra", "cka"])}
    assert all(r.cached and r.error is None for r in results.values())
    assert results["probe-outputs"].values.shape == (6, 12 * H.EMBED_ROWS)
    children = [m for m, p in parents.items() if p]
    for name, r in results.items():
        v = np.asarray(r.values, dtype=np.float64)
        d = v if name == "cka" else np.linalg.norm(v[:, None] - v[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        for c in children:  # each fine-tune is nearer its own base than the other base
            i, mine, other = zoo.model_ids.index(c), zoo.model_ids.index(parents[c]), zoo.model_ids.index(
                "base1" if parents[c] == "base0" else "base0")
            assert d[i, mine] < d[i, other], (name, c)


@pytest.mark.parametrize("kind", ["gpt2", "neox", "llama"])
@pytest.mark.parametrize("readout", ["last", "all"])
def test_vmapped_outputs_equal_each_models_own_forward(kind, readout, tmp_path):
    from transformers import AutoModelForCausalLM

    from fingerprint.hf_import import import_hf

    for s in range(3):
        H.save(H.model(kind, seed=s), tmp_path / "m" / f"s{s}", tokenizer=s == 0)  # one tokenizer serves all
    H.prompts(tmp_path / "p.txt", n=6)
    import_hf(tmp_path / "m", tmp_path / "zoo", [str(tmp_path / "p.txt")], readout=readout)
    zoo = fingerprint.Zoo.open(tmp_path / "zoo")
    batch = ModelBatch.from_zoo(zoo)
    x = batch.task.probes("in_dist")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the vmapped path, not the per-model fallback and its warning
        out = batch.forward(x)
        acts = batch.activations(x, ["block1.resid_post"])["block1.resid_post"]
    pad = zoo.family_spec["pad_id"]
    mask = (x != pad).long().cummax(1).values
    for j, mid in enumerate(zoo.model_ids):
        m = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m" / mid), attn_implementation="eager").eval()
        with torch.no_grad():
            o = m(input_ids=x, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp_min(0),
                  output_hidden_states=True)
        want = o.logits[:, -1] if readout == "last" else o.logits * mask[..., None]
        assert torch.allclose(out[j], want, atol=1e-5, rtol=1e-4), (kind, mid)
        assert torch.allclose(acts[j], o.hidden_states[2] * mask[..., None], atol=1e-5, rtol=1e-4)
    assert out.shape[:2] == (3, 6) and out.shape[-1] == H.EMBED_ROWS


def test_mixed_architectures_name_the_odd_one_out(tmp_path, capsys):
    for s in range(2):
        H.save(H.model("gpt2", seed=s), tmp_path / "m" / f"gpt{s}")
    H.save(H.model("neox", seed=0), tmp_path / "m" / "odd")
    code, _, err = cli(capsys, "import", tmp_path / "m", "--hf", "--out", tmp_path / "zoo")
    assert code == 2
    assert err.strip().count("\n") == 0 and "model 'odd' is a gpt_neox model" in err and "share an architecture" in err
    H.save(H.model("gpt2", seed=3, width=64), tmp_path / "m" / "odd")  # same type, other width
    code, _, err = cli(capsys, "import", tmp_path / "m", "--hf", "--out", tmp_path / "zoo")
    assert code == 2 and "model 'odd' has config n_embd = 64" in err and "32" in err
    assert not (tmp_path / "zoo").exists()


def test_hf_zoo_never_runs_code_it_names(gpt2_zoo, tmp_path):
    """The stored config is data: an ``auto_map`` pointing at a module inside the zoo is never
    imported, and a model type transformers does not have is a one-line error, not remote code."""
    import shutil

    zoo_dir = tmp_path / "zoo"
    shutil.copytree(gpt2_zoo, zoo_dir)
    marker = tmp_path / "ran"
    (zoo_dir / "evil_model.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n")
    manifest = json.loads((zoo_dir / "manifest.json").read_text())
    manifest["family"]["config"]["auto_map"] = {"AutoConfig": "evil_model.Config", "AutoModelForCausalLM": "evil_model.Model"}
    (zoo_dir / "manifest.json").write_text(json.dumps(manifest))
    zoo = fingerprint.Zoo.open(zoo_dir)
    assert zoo.trust_code is False
    r = extract(zoo, ["weight-stats", "probe-outputs"])
    assert all(x.error is None for x in r)
    assert not marker.exists() and "evil_model" not in sys.modules

    manifest["family"]["config"]["model_type"] = "evil"
    (zoo_dir / "manifest.json").write_text(json.dumps(manifest))
    (r,) = extract(fingerprint.Zoo.open(zoo_dir), ["probe-outputs:n_probes=3"])
    assert "model_type 'evil' is not built into transformers" in r.error and "\n" not in r.error
    assert not marker.exists()


def test_pickled_weights_load_only_as_plain_tensors(tmp_path, capsys):
    """A ``pytorch_model.bin`` is read with ``weights_only=True``: plain tensors import, a pickle
    that would run code is refused with one line."""
    for s in range(2):
        d = H.save(H.model("gpt2", seed=s), tmp_path / "m" / f"s{s}")
        sd = H.model("gpt2", seed=s).state_dict()
        (d / "model.safetensors").unlink()
        torch.save(sd, d / "pytorch_model.bin")
    code, _, err = cli(capsys, "import", tmp_path / "m", "--hf", "--out", tmp_path / "zoo")
    assert code == 0, err
    params = fingerprint.Zoo.open(tmp_path / "zoo").params()
    assert torch.equal(params["transformer.wte.weight"][1], H.model("gpt2", seed=1).transformer.wte.weight.detach())

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"transformer.wte.weight": Evil()}, tmp_path / "m" / "s1" / "pytorch_model.bin")
    code, out, err = cli(capsys, "import", tmp_path / "m", "--hf", "--out", tmp_path / "zoo2")
    assert code == 2 and "refusing to unpickle" in err and "pwned" not in out
    assert not (tmp_path / "zoo2").exists()


def test_bad_inputs_are_one_line_errors(gpt2_pop, tmp_path, capsys, monkeypatch):
    root, _ = gpt2_pop
    models = root / "models"
    cases = [
        (["--hf", "--arch", "x:y"], "--arch is not for --hf imports"),
        (["--probes-text", root / "prompts.txt"], "--probes-text is for --hf imports"),
        ([], "needs --arch MODULE:FACTORY"),
        (["--hf", "--probes-text", f"in_dist={root / 'nope.txt'}"], "prompt file"),
        (["--hf", "--probes-text", f"{RARE_SET}={root / 'ood.txt'}"], "the importer adds that set itself"),
        (["--hf", "--readout", "middle"], "unknown readout 'middle'"),
    ]
    for extra, msg in cases:
        code, _, err = cli(capsys, "import", models, "--out", tmp_path / "zoo", *extra)
        assert code == 2 and msg in err and err.strip().count("\n") == 0, (extra, err)
    (tmp_path / "src" / "empty").mkdir(parents=True)
    code, _, err = cli(capsys, "import", tmp_path / "src", "--hf", "--out", tmp_path / "zoo")
    assert code == 2 and "has no config.json" in err

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the extra were not installed
    code, _, err = cli(capsys, "import", models, "--hf", "--out", tmp_path / "zoo")
    assert code == 2 and "pip install -e '.[hf]'" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "zoo").exists()


def test_recombined_prompts_of_several_lengths_are_read_as_the_models_read_real_prompts(gpt2_pop, gpt2_zoo):
    """recombined-outputs on an HF zoo whose prompts have 3 to 9 words: every recombined prompt is a
    valid left-padded prompt, so its outputs are the model's own on the prompt's real tokens alone."""
    from transformers import AutoModelForCausalLM

    from fingerprint.extractors.behavioural import recombined_batch

    root, _ = gpt2_pop
    zoo = fingerprint.Zoo.open(gpt2_zoo)
    pad = zoo.family_spec["pad_id"]
    ref = fingerprint.population.task_for(zoo).probes("in_dist")
    assert len(set((ref != pad).sum(1).tolist())) > 2  # prompts of several lengths
    x = recombined_batch(ref, 24, "coord", 0, pad)
    real = (x != pad).long().cummax(1).values.bool()
    assert not ((x == pad) & real).any()
    (r,) = extract(zoo, ["recombined-outputs:n_probes=24,transform=logits"])
    assert r.error is None
    got = torch.as_tensor(np.asarray(r.values)).reshape(len(zoo.model_ids), 24, -1)
    for k in (0, 3):
        m = AutoModelForCausalLM.from_pretrained(str(root / "models" / zoo.model_ids[k]), attn_implementation="eager").eval()
        with torch.no_grad():
            want = torch.stack([m(input_ids=row[keep][None]).logits[0, -1] for row, keep in zip(x, real)])
        assert torch.allclose(got[k], want, atol=1e-4, rtol=1e-4)


def test_output_profile_of_every_position_leaves_padding_out(gpt2_pop, tmp_path):
    """--readout all: padded positions are no inputs, so more left padding (a longer prompt in another
    probe set) leaves the in_dist profile as it was."""
    from fingerprint.hf_import import import_hf

    root, _ = gpt2_pop
    (tmp_path / "long.txt").write_text(" ".join(H.WORDS[:20]) + "\n")
    import_hf(root / "models", tmp_path / "short", [str(root / "prompts.txt")], readout="all")
    import_hf(root / "models", tmp_path / "long", [str(root / "prompts.txt"), f"long={tmp_path / 'long.txt'}"], readout="all")
    rows = []
    for name in ("short", "long"):
        zoo = fingerprint.Zoo.open(tmp_path / name)
        rows.append(zoo.family_spec["input_shape"][0])
        (r,) = extract(zoo, ["output-profile"])
        assert r.error is None
        rows.append(np.asarray(r.values, dtype=np.float64))
    assert rows[2] > rows[0]  # the long prompt pads in_dist further
    assert np.allclose(rows[1], rows[3], atol=1e-4)


def test_an_hf_import_writes_a_shard_at_a_time_the_same_weights(gpt2_pop, gpt2_zoo, tmp_path, monkeypatch):
    """As `--arch` imports (an outside audit, 72): each model's weights are checked when read, then read
    again a shard at a time when written, a shard at most SHARD_FLOATS weights; the zoo is the same."""
    import fingerprint.importer as imp
    from fingerprint.hf_import import import_hf

    root, _ = gpt2_pop
    whole = fingerprint.Zoo.open(gpt2_zoo)
    monkeypatch.setattr(imp, "SHARD_FLOATS", 2 * int(whole.family_spec["n_params"]))  # two models a shard
    parts = fingerprint.Zoo.open(import_hf(root / "models", tmp_path / "zoo",
                                           [str(root / "prompts.txt"), f"ood={root / 'ood.txt'}"], root / "meta.csv"))
    assert len(whole.manifest["shards"]) == 1 and {s["n_models"] for s in parts.manifest["shards"]} <= {1, 2}
    assert len(parts.manifest["shards"]) == (len(whole) + 1) // 2 and parts.model_ids == whole.model_ids
    a, b = whole.params(), parts.params()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_hf_children_without_a_data_seed_column_get_the_shared_order_note(gpt2_pop, tmp_path):
    """An outside audit (78): `import --hf` did not say what the state-dict import says of fine-tunes imported without a
    data_seed column, and a null whose child j of every base shared data seed j then read as 2 candidates."""
    from fingerprint.hf_import import import_hf

    root, parents = gpt2_pop
    csv = tmp_path / "meta.csv"
    csv.write_text("model_id,parent_id\n" + "".join(f"{m},{p}\n" for m, p in parents.items()))
    notes: list[str] = []
    import_hf(root / "models", tmp_path / "zoo", [str(root / "prompts.txt")], csv, on_note=notes.append)
    assert notes == [next(n for n in notes if n.startswith("children of parents (parent_id) and no data_seed column: "))]
    csv.write_text("model_id,parent_id,data_seed\n" + "".join(f"{m},{p},{i}\n" for i, (m, p) in enumerate(parents.items())))
    notes.clear()
    import_hf(root / "models", tmp_path / "zoo2", [str(root / "prompts.txt")], csv, on_note=notes.append)
    assert notes == []


def test_an_hf_import_marks_a_privileged_prompt_set_and_says_prompts_that_probe_nothing(gpt2_pop, tmp_path, capsys):
    """Outside audit 123: `--privileged` was refused with `--hf`, so a trigger-built prompt set could not be marked and
    its camps read as label-free evidence; the rare-token set was said to be read by no default fingerprint (it is
    anomalous-inputs'); prompts of unknown tokens only, or none, were imported without a word; `--skip-bad` was refused
    with --arch's reason."""
    from fingerprint.pipeline import unread_probe_sets
    from fingerprint.population import privileged_probes

    root, _ = gpt2_pop
    (tmp_path / "trigger.txt").write_text((root / "ood.txt").read_text())
    code, out, err = cli(capsys, "import", root / "models", "--hf", "--out", tmp_path / "zoo", "--probes-text",
                         root / "prompts.txt", "--probes-text", f"trigger={tmp_path / 'trigger.txt'}",
                         "--probes-text", f"extra={root / 'ood.txt'}", "--privileged", "trigger")
    assert code == 0, err
    zoo = fingerprint.Zoo.open(tmp_path / "zoo")
    assert privileged_probes(zoo) == {"trigger"}
    note = unread_probe_sets(zoo)
    assert "'extra' is read by no fingerprint" in note and RARE_SET not in note and "trigger" not in note
    code, _, err = cli(capsys, "import", root / "models", "--hf", "--out", tmp_path / "z2", "--probes-text",
                       root / "prompts.txt", "--privileged", "nope")
    assert code == 2 and "privileged probe set 'nope' is not among the probe sets (valid: in_dist)" in err
    code, _, err = cli(capsys, "import", root / "models", "--hf", "--out", tmp_path / "z2", "--skip-bad")
    assert code == 2 and "--skip-bad is not for --hf imports: a model directory that cannot be read stops the import" in err
    assert not (tmp_path / "z2").exists()

    (tmp_path / "unk.txt").write_text("zzzz qqqq\n" + (root / "prompts.txt").read_text())
    code, out, err = cli(capsys, "import", root / "models", "--hf", "--out", tmp_path / "z3", "--probes-text",
                         tmp_path / "unk.txt")
    said = " ".join((out + err).split())
    assert code == 0 and "probe set 'in_dist': 1 of its" in said and "are only the unknown token" in said, said
    code, out, err = cli(capsys, "import", root / "models", "--hf", "--out", tmp_path / "z4")
    assert code == 0 and "no --probes-text: only the rare-token set is imported" in " ".join((out + err).split())
