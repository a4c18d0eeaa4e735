"""``token-logprobs``: per-token log-probabilities on prompt sets, for a tiny-lm zoo (trained here)
and for tiny GPT-2 models built here from a config and imported with ``import --hf`` (nothing
downloaded); checked against each model's own forward pass."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch

from fingerprint import Zoo
from fingerprint.batch import ModelBatch
from fingerprint.extraction import extract
from fingerprint.registry import get_extractor
from training.config import load_config
from training.core.errors import UserError
from training.sweep import run_sweep

TINY_LM = """
name = "tiny-lm-logprobs"

[task]
name = "tiny-lm"
n_train = 256
n_eval = 32
n_probes = 8
n_diag = 32

[model]
arch = "transformer"
vocab = 64
d_model = 16
n_heads = 2
n_layers = 1
d_mlp = 32
layernorm = true
readout = "all"

[train]
steps = 5
batch_size = 16
lr = 0.01
checkpoints = [0]

[seeds]
init = 2
data = 2
"""


@pytest.fixture(scope="module")
def lm_zoo(tmp_path_factory) -> Zoo:
    tmp = tmp_path_factory.mktemp("logprobs")
    (tmp / "lm.toml").write_text(TINY_LM)
    run_sweep(load_config(tmp / "lm.toml"), tmp / "zoo")
    return Zoo.open(tmp / "zoo")


def own_logprobs(batch: ModelBatch, x: torch.Tensor) -> torch.Tensor:
    """``[n, P, T-1]``: each position's log-probability of the next token, from the batch's own outputs."""
    lp = torch.log_softmax(batch.forward(x)[:, :, :-1].double(), -1)
    return lp.gather(-1, x[None, :, 1:, None].expand(len(batch), -1, -1, 1))[..., 0]


def test_shapes_values_and_determinism_on_a_tiny_lm_zoo(lm_zoo, tmp_path):
    n = len(lm_zoo.model_ids)
    batch = ModelBatch.from_zoo(lm_zoo)
    x = batch.task.probes("in_dist")[:8]
    T = x.shape[1]
    r = extract(lm_zoo, ["token-logprobs"])[0]
    assert r.error is None and r.values.shape == (n, 8 * (T - 1))  # every next token of 8 prompts
    assert r.meta["scored_per_prompt"] == [T - 1] * 8
    want = own_logprobs(batch, x).flatten(1).numpy()
    assert np.allclose(r.values, want, atol=1e-4)
    assert (r.values <= 1e-6).all()  # log-probabilities
    again = extract(lm_zoo, ["token-logprobs"], force=True)[0]
    assert np.array_equal(again.values, r.values)  # deterministic (same host, same process)

    k = extract(lm_zoo, ["token-logprobs:k=3"])[0]
    assert k.values.shape == (n, 8 * (T - 1) * 3) and len(k.meta["tokens"]) == 3
    counts = torch.bincount(x[:, 1:].flatten(), minlength=64)
    assert counts[k.meta["tokens"][0]] == counts.max()  # the most frequent next token first
    lp = torch.log_softmax(batch.forward(x)[:, :, :-1].double(), -1)[..., k.meta["tokens"]]
    assert np.allclose(k.values, lp.flatten(1).numpy(), atol=1e-4)

    cont = extract(lm_zoo, ["token-logprobs:prompts=ood,continuation=5 6"])[0]
    assert cont.values.shape == (n, 8 * 2) and cont.meta["scored_per_prompt"] == [2] * 8
    q = batch.task.probes("ood")[:8]
    shifted = torch.cat([q[:, 2:], torch.tensor([[5, 6]]).expand(8, 2)], 1)  # cut from the left to T
    assert np.allclose(cont.values, own_logprobs(batch, shifted)[:, :, -2:].flatten(1).numpy(), atol=1e-4)


def test_a_prompt_file_of_token_ids_and_its_content_in_the_cache_key(lm_zoo, tmp_path):
    batch = ModelBatch.from_zoo(lm_zoo)
    x = batch.task.probes("in_dist")[:2]
    f = tmp_path / "prompts.txt"
    f.write_text(f"# two prompts\n{' '.join(map(str, x[0, :5].tolist()))}\n\n{','.join(map(str, x[1].tolist()))}\n")
    r = extract(lm_zoo, [f"token-logprobs:prompt_file={f}"])[0]
    assert r.error is None and r.meta["scored_per_prompt"] == [4, x.shape[1] - 1]
    full = own_logprobs(batch, x)
    # a short prompt is right-padded: causal positions never read the padding, so it scores as a prefix
    assert np.allclose(r.values, torch.cat([full[:, 0, :4], full[:, 1]], 1).numpy(), atol=1e-4)
    f.write_text(" ".join(map(str, x[0, :5].tolist())) + "\n")  # an edited file is another cache entry
    r2 = extract(lm_zoo, [f"token-logprobs:prompt_file={f}"])[0]
    assert not r2.cached and r2.key != r.key and r2.values.shape == (len(batch), 4)

    spec = get_extractor("token-logprobs")
    for bad, why in [("5 x 7", "token ids"), ("5 99", "outside the models' vocabulary"), (" ".join(["1"] * 40), "at most")]:
        f.write_text(bad + "\n")
        with pytest.raises(UserError, match=why):
            spec.compute(batch, spec.resolve_params({"prompt_file": str(f)}))
    with pytest.raises(UserError, match="names no file"):
        spec.resolve_params({"prompt_file": str(tmp_path / "missing.txt")})
    with pytest.raises(UserError, match="continuation"):
        spec.compute(batch, spec.resolve_params({"continuation": "a b"}))


def test_models_without_per_position_outputs_are_refused(tiny_zoo):
    with pytest.raises(UserError, match="token prompts"):  # xor-cues: vector inputs
        spec = get_extractor("token-logprobs")
        spec.compute(ModelBatch.from_zoo(Zoo.open(tiny_zoo)), spec.resolve_params({}))


def cli(*args) -> int:
    from fingerprint.cli import main

    old = sys.argv
    sys.argv = ["fingerprint", *map(str, args)]
    try:
        with warnings.catch_warnings():
            main()
        return 0
    except SystemExit as e:
        return int(e.code or 0)
    finally:
        sys.argv = old


def test_hf_import_with_last_readout_gives_each_models_own_token_logprobs(tmp_path):
    pytest.importorskip("transformers")
    import hf_models as H
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    for s in range(3):
        H.save(H.model("gpt2", seed=s), tmp_path / "m" / f"s{s}", tokenizer=s == 0)
    H.prompts(tmp_path / "p.txt", n=5)
    assert cli("import", tmp_path / "m", "--hf", "--out", tmp_path / "zoo", "--probes-text", tmp_path / "p.txt") == 0
    ids = tmp_path / "ids.txt"
    ids.write_text("5 6 7 8\n9 10\n")
    assert cli("extract", tmp_path / "zoo", "--fp", "token-logprobs", "--fp", f"token-logprobs:prompt_file={ids},k=2") == 0
    zoo = Zoo.open(tmp_path / "zoo")
    assert zoo.family_spec["readout"] == "last"  # imported with last-position logits only
    r, rk = extract(zoo, ["token-logprobs", f"token-logprobs:prompt_file={ids},k=2"])
    assert r.cached and rk.cached
    x = ModelBatch.from_zoo(zoo).task.probes("in_dist")
    pad = zoo.family_spec["pad_id"]
    mask = (x != pad).long().cummax(1).values
    score = (mask[:, :-1] == 1)  # left-padded: every position from the first real token on
    assert r.values.shape == (3, int(score.sum())) and rk.values.shape == (3, (3 + 1) * 2)
    for j, mid in enumerate(zoo.model_ids):
        m = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m" / mid), attn_implementation="eager").eval()
        with torch.no_grad():
            logits = m(input_ids=x, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp_min(0)).logits
        lp = torch.log_softmax(logits[:, :-1].double(), -1).gather(-1, x[:, 1:, None])[..., 0]
        assert np.allclose(r.values[j], lp[score].numpy(), atol=1e-4), mid


def test_a_file_parameter_must_be_a_string_parameter():
    import fingerprint
    from training.core.errors import PluginError

    with pytest.raises(PluginError, match="declares 'n' a file parameter"):
        fingerprint.extractor("filed-x", files=("n",))(lambda models, n=1, path="": None)
