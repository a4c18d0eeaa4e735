"""A tiny real modadd transformer zoo (p = 7, 4 models), shared by the extractor tests that need a
token model with modadd's diagnostics (``modadd_zoo``: one per test module, read-only use plus
fingerprint caches)."""

from __future__ import annotations

import pytest

TINY_MODADD = """
name = "tiny-modadd"
[task]
name = "modadd"
p = 7
n_diag = 32
n_key_freqs = 2
[model]
arch = "transformer"
vocab = 7
d_model = 8
n_heads = 2
d_mlp = 16
attention_rate = 0.5
[train]
steps = 30
batch_size = 32
optimizer = "adamw"
lr = 0.003
weight_decay = 1.0
checkpoints = [0, 30]
[seeds]
init = 2
data = 2
"""


@pytest.fixture(scope="module")
def modadd_zoo(tmp_path_factory):
    import fingerprint
    from training.config import load_config
    from training.sweep import run_sweep

    root = tmp_path_factory.mktemp("tiny-modadd")
    (root / "tiny.toml").write_text(TINY_MODADD)
    run_sweep(load_config(root / "tiny.toml"), root / "zoo")
    return fingerprint.Zoo.open(root / "zoo")
