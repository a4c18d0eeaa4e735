"""Seed derivation and counter-based random numbers.

Two kinds of randomness, both functions of a model's seeds only (never of its position in a batch):

* ``derive_seed`` mixes integers into a 63-bit seed for a per-model ``torch.Generator`` (used for
  initialisation, which happens once per model and is not a hot path).
* ``hash32`` / ``uniform`` / ``normal`` / ``permutation`` are *counter-based*: the random value is a
  pure hash of ``(seed, counter...)``, so a whole population's data order for one step is one
  vectorised tensor op, and model ``j``'s draws do not depend on which other models share the batch.

Small hashes (per-model states) are done on 32-bit lanes held in int64 tensors, with the
multiplications split in 16-bit halves so no intermediate overflows a signed 64-bit integer; the
large final one of :func:`bits` runs in numpy ``uint32`` on the CPU (multiplication wraps mod 2**32
natively), giving the same values several times faster.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_MASK64 = (1 << 64) - 1
_MASK32 = 0xFFFFFFFF

# Domain tags keep the streams of different purposes independent.
INIT = 0x1
DATA = 0x2
TASK = 0x3
PROBE = 0x4
VARIANT = 0x5
EXTRACT = 0x6


def splitmix64(x: int) -> int:
    """One round of SplitMix64 on a Python int (mod 2**64)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def derive_seed(*keys: int) -> int:
    """Mix integer keys into a non-negative 63-bit seed (order matters)."""
    h = 0x243F6A8885A308D3
    for k in keys:
        h = splitmix64(h ^ (int(k) & _MASK64))
    return h & ((1 << 63) - 1)


def generator(*keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded from ``derive_seed(*keys)``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*keys))
    return g


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(x * c) mod 2**32`` for ``0 <= x < 2**32`` without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """Bijective 32-bit integer hash ("lowbias32") of an int64 tensor holding values in [0, 2**32)."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    x = x ^ (x >> 16)
    return x


def seed_lanes(seeds: torch.Tensor | list[int], *keys: int) -> torch.Tensor:
    """Per-model 32-bit hash states ``[n]`` from integer seeds and domain keys."""
    out = []
    for s in (seeds.tolist() if isinstance(seeds, torch.Tensor) else seeds):
        out.append(derive_seed(*keys, int(s)) & _MASK32)
    return torch.tensor(out, dtype=torch.int64)


def mix(state: torch.Tensor, counter: torch.Tensor | int) -> torch.Tensor:
    """Combine a hash state with a counter (broadcasting): a new, independent-looking state."""
    return hash32((hash32(state) + counter * 0x9E3779B9 + 0x632BE5AB) & _MASK32)


def bits(state: torch.Tensor, *counters: int, shape: tuple[int, ...] = ()) -> torch.Tensor:
    """32-bit random integers ``[*state.shape, *shape]`` from per-model states and counters."""
    s = state
    for c in counters:
        s = mix(s, int(c))
    s = s.reshape(s.shape + (1,) * len(shape))
    if state.device.type != "cpu":
        return mix(s, torch.arange(math.prod(shape), dtype=torch.int64, device=state.device).reshape(shape))
    return torch.from_numpy(_bits_u32(s, shape).astype(np.int64))


def _bits_u32(s: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """:func:`bits` on the CPU, as uint32, from the counter-mixed states ``s [..., 1, ...]``."""
    idx = np.arange(math.prod(shape), dtype=np.uint32).reshape(shape)
    return np.asarray(_mix_u32(s.numpy().astype(np.uint32), idx))


# The same hash in numpy's uint32, whose multiplication wraps mod 2**32 natively: ~7 passes over the
# output instead of ~20 int64 ones, ~3.5x faster for a population's data order; identical values.
def _hash32_u32(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint32(16))
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def _mix_u32(state: np.ndarray, counter: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return _hash32_u32(_hash32_u32(state) + counter * np.uint32(0x9E3779B9) + np.uint32(0x632BE5AB))


def uniform(state: torch.Tensor, *counters: int, shape: tuple[int, ...] = ()) -> torch.Tensor:
    """Uniform floats in [0, 1), shape ``[*state.shape, *shape]``, float32."""
    return (bits(state, *counters, shape=shape) >> 8).to(torch.float32) * (1.0 / (1 << 24))


def normal(state: torch.Tensor, *counters: int, shape: tuple[int, ...] = ()) -> torch.Tensor:
    """Standard normal floats (Box-Muller), shape ``[*state.shape, *shape]``, float32."""
    u1 = uniform(state, *counters, 1, shape=shape)
    u2 = uniform(state, *counters, 2, shape=shape)
    r = torch.sqrt(-2.0 * torch.log1p(-u1))  # 1 - u1 in (0, 1]
    return r * torch.cos(2 * math.pi * u2)


def randint(state: torch.Tensor, high: int, *counters: int, shape: tuple[int, ...] = ()) -> torch.Tensor:
    """Integers in [0, high), shape ``[*state.shape, *shape]`` (modulo bias < high / 2**32)."""
    return bits(state, *counters, shape=shape) % high


def permutation(state: torch.Tensor, n: int, *counters: int) -> torch.Tensor:
    """A random permutation of ``range(n)`` per model: ``[*state.shape, n]`` int64.

    The order of ``n`` hashed 32-bit keys, ties broken by position (a stable argsort). It is computed
    as a plain sort of ``key << b | position`` (all distinct, so any sort gives the stable order) with
    numpy's vectorised sort: ~5x faster than ``torch.argsort(stable=True)``; the same permutation.
    On the CPU the whole computation stays in numpy (no round trips through int64 tensors).
    """
    shift = max(n - 1, 1).bit_length()
    if shift > 31 or state.device.type != "cpu":  # key << shift would overflow int64 / not on the CPU
        return torch.argsort(bits(state, *counters, shape=(n,)), dim=-1, stable=True)
    s = state
    for c in counters:
        s = mix(s, int(c))
    packed = _bits_u32(s.unsqueeze(-1), (n,)).astype(np.int64)
    packed <<= shift
    packed |= np.arange(n, dtype=np.int64)
    packed.sort(axis=-1)
    packed &= (1 << shift) - 1
    return torch.from_numpy(packed)
