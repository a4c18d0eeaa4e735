"""Declared symmetries tried on the probes at import (fingerprint/declared.py; outside audit 112)."""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch import nn

from fingerprint.declared import check_declared
from tests.conftest import run_cli, saved_models
from training.core.errors import UserError


class Attention(nn.Module):
    """A hand-written attention with biased q, k, v projections (``nn.Linear``'s default, square: d_model 8), 2 heads
    over 4 positions,
    declaring its mixings as ``declare`` says: the docs' example (weights only), with the biases, or a key on the
    wrong axis."""

    def __init__(self, declare: str = "biases") -> None:
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(8, 8) for _ in range(3))
        self.o, self.out = nn.Linear(8, 8), nn.Linear(8, 3)
        self.declare = declare

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 4, 8)
        q, k, v = (f(x).reshape(-1, 4, 2, 4).transpose(1, 2) for f in (self.q, self.k, self.v))
        att = torch.softmax(q @ k.mT / 2, -1) @ v
        return self.out(torch.relu(self.o(att.transpose(1, 2).reshape(-1, 4, 8)))).mean(1)

    def hidden_permutable(self) -> dict:
        return {"o": [("o.weight", 0), ("o.bias", 0), ("out.weight", 1)]}

    def hidden_mixable(self) -> dict:
        key = ("k.weight", 1) if self.declare == "wrong axis" else ("k.weight", -1)
        qk, vo = [("q.weight", 0), key], [("v.weight", 0), ("o.weight", 1)]
        if self.declare == "biases":
            qk, vo = qk + [("q.bias", 0), ("k.bias", -1)], vo + [("v.bias", 0)]
        return {"qk": {"members": qk, "blocks": 2}, "vo": {"members": vo, "blocks": 2}}


def _check(model: nn.Module) -> None:
    x = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    check_declared(model, model.state_dict(), {"in_dist": x}, "arch:make")


def test_a_declared_group_that_moves_the_outputs_is_refused_with_what_it_left_out():
    """The docs' attention example left out the projections' biases (audit 112: head-mixed twins of a null then read
    `crosses lineage` on weight-stats); with them the declaration is the model's symmetry; a key on axis 1 (columns)
    instead of -1 (rows) is refused too. The permutation group (a ReLU layer's units into the next) passes."""
    torch.manual_seed(0)
    _check(Attention("biases"))
    with pytest.raises(UserError) as e:
        _check(Attention("weights only"))
    assert str(e.value).startswith("arch:make: hidden_mixable() group 'qk' is not a symmetry of the model: moving its "
                                   "members along it (a random mixing) changed the outputs on the probes by "), e.value
    assert "a bias moves with its weight's rows: list ('q.bias', 0), ('k.bias', -1) too" in str(e.value)
    with pytest.raises(UserError, match="group 'qk' is not a symmetry.*check each member's axis"):
        _check(Attention("wrong axis"))

    class Unrelated(Attention):  # a permutation group joining units that are not one layer's: refused
        def hidden_permutable(self) -> dict:
            return {"o": [("o.weight", 0), ("out.weight", 1)]}  # o.bias left out

    with pytest.raises(UserError, match=r"hidden_permutable\(\) group 'o' is not a symmetry.*\('o.bias', 0\)"):
        _check(Unrelated())

    class Blocks(Attention):  # hidden_mixable()'s dict members in a permutation (outside audit 118: a GRU's gates)
        def hidden_permutable(self) -> dict:
            return {"o": [{"param": "o.weight", "axis": 0, "rows": [0, 16]}, ("out.weight", 1)]}

    with pytest.raises(UserError, match=r"^arch:make: hidden_permutable\(\) group 'o': member .* is not a \(param, "
                       r"axis\) pair"):
        _check(Blocks())


ARCH = textwrap.dedent('''
    import torch
    from torch import nn
    from tests.fingerprint.test_declared import Attention

    def make():
        return Attention("weights only")

    def probes():
        return {"in_dist": torch.randn(16, 32, generator=torch.Generator().manual_seed(0))}
''')


def test_import_refuses_a_declaration_that_is_not_a_symmetry(tmp_path, monkeypatch):
    """Through the CLI: one line, exit status 2, and no zoo written."""
    src = saved_models(tmp_path, monkeypatch, "declarch", ARCH, 3)
    res = run_cli("import", src / "ckpts", "--arch", "declarch:make", "--probes", "declarch:probes", "--out", tmp_path / "zoo")
    assert res.returncode == 2 and not (tmp_path / "zoo").exists(), res.stderr
    assert "declarch:make: hidden_mixable() group 'qk' is not a symmetry of the model" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_declarations_of_every_accepted_form_pass_and_a_zero_bias_does_not_hide_a_missing_member():
    """Review 112: a list of dict members (TransformerLens' layout) crashed the check, a bfloat16 checkpoint's correct
    rescaling read as moved by its rounding, and a group missing a bias that was zero in the checkpoint passed. The
    check runs in float64 with every parameter moved by a little noise."""
    from tests.fingerprint.test_mixing import _LensHeads

    torch.manual_seed(0)
    lens = _LensHeads()
    check_declared(lens, lens.state_dict(), {"in_dist": torch.randn(16, 24)}, "arch:make")

    class Net(nn.Module):
        def __init__(self, bias_listed: bool) -> None:
            super().__init__()
            self.a, self.b, self.listed = nn.Linear(8, 6), nn.Linear(6, 3), bias_listed
            nn.init.zeros_(self.a.bias)  # a step-0 checkpoint

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.relu(self.a(x)))

        def hidden_rescalable(self) -> dict:
            return {"h": [("a.weight", 0), *([("a.bias", 0)] if self.listed else []), ("b.weight", 1)]}

    x = torch.randn(16, 8)
    half = Net(True).to(torch.bfloat16)
    check_declared(half, half.state_dict(), {"in_dist": x.to(torch.bfloat16)}, "arch:make")
    with pytest.raises(UserError, match=r"hidden_rescalable\(\) group 'h' is not a symmetry.*\('a.bias', 0\)"):
        check_declared(Net(False), Net(False).state_dict(), {"in_dist": x}, "arch:make")


class Undeclared(nn.Module):
    """:class:`Attention`'s forward, its symmetries undeclared."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(8, 8) for _ in range(3))
        self.o, self.out = nn.Linear(8, 8), nn.Linear(8, 3)

    forward = Attention.forward


UNDECLARED = textwrap.dedent('''
    import torch
    from tests.fingerprint.test_declared import Undeclared

    def make():
        return Undeclared()

    def probes():
        return {"in_dist": torch.randn(16, 32, generator=torch.Generator().manual_seed(0))}
''')


def test_an_attention_that_declares_nothing_is_said_at_import(tmp_path, monkeypatch):
    """Audit 112 (F7): a hand-written attention that declared no symmetries was imported without a word, and the
    weight fingerprints read head re-bases as differences. The import says so in one line; a declared attention, a
    stock nn.MultiheadAttention (found without a declaration) and a classifier's own softmax say nothing."""
    from fingerprint.import_notes import attention_note

    src = saved_models(tmp_path, monkeypatch, "undeclarch", UNDECLARED, 3)
    res = run_cli("import", src / "ckpts", "--arch", "undeclarch:make", "--probes", "undeclarch:probes",
                  "--out", tmp_path / "zoo")
    assert res.returncode == 0, res.stderr
    assert ("the forward computes attention outside nn.MultiheadAttention (a softmax over ['...', 4, 4] scores) and the "
            "module declares no hidden_mixable(): the weight fingerprints read two models that differ only by a re-basis "
            "of a head's queries and keys (or values and outputs) as different; declare its heads") \
        in " ".join(res.stdout.split()), res.stdout
    x = {"in_dist": torch.randn(4, 32)}
    assert attention_note(Attention("biases"), x) == ""
    stock = nn.Sequential(nn.Unflatten(1, (4, 8)), nn.TransformerEncoderLayer(8, 2, 16, batch_first=True))
    assert attention_note(stock, x) == ""
    assert attention_note(nn.Sequential(nn.Linear(32, 4), nn.Softmax(-1)), x) == ""
    # a fused attention, its arguments by name, 4 heads of 2 over 4 positions (review 113: read by the query's shape,
    # it was said only when a head's width equalled the positions)
    fused = Fused()
    assert "(a softmax over ['...', 4, 4] scores)" in attention_note(fused, x) and fused.calls == 0  # (run on a copy)
    cross = Fused()
    cross.forward = lambda x: torch.nn.functional.scaled_dot_product_attention(  # queries of 4 positions, keys of 2
        x.reshape(-1, 1, 4, 8), x.reshape(-1, 1, 4, 8)[:, :, :2], x.reshape(-1, 1, 4, 8)[:, :, :2]).flatten(1)
    assert "(a softmax over ['...', 4, 2] scores)" in attention_note(cross, x)  # cross-attention (review 114)
    channels = nn.Sequential(nn.Unflatten(1, (2, 4, 4)), nn.Softmax(1))  # a softmax over channels of square maps
    assert attention_note(channels, x) == ""


class Fused(nn.Module):
    """Attention through ``scaled_dot_product_attention`` with keyword arguments; counts its forward calls."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.calls = nn.Linear(8, 24), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        q, k, v = (t.reshape(-1, 4, 4, 2).transpose(1, 2) for t in self.qkv(x.reshape(-1, 4, 8)).chunk(3, -1))
        return torch.nn.functional.scaled_dot_product_attention(query=q, key=k, value=v).flatten(1)
