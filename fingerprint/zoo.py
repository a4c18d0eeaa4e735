"""``fingerprint.Zoo``: the zoo store's :class:`~training.core.zoo.Zoo`, plus building one from
in-memory ``nn.Module`` s.

Reading and writing zoos is the floor's job (``training.core``, schema in ``docs/zoo-format.md``);
turning modules into a zoo needs the importer, which stands above it, so that constructor lives
here, on the class users touch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fingerprint.importer import zoo_from_modules
from training.core.zoo import Zoo as StoreZoo


class Zoo(StoreZoo):
    """A population on disk (see :class:`training.core.zoo.Zoo`). Open with :meth:`Zoo.open`."""

    @classmethod
    def from_modules(cls, modules: Sequence[Any], out: str | Path | None = None, metadata: dict[str, Sequence[Any]] | None = None,
                     model_ids: Sequence[str] | None = None, probes: dict[str, Any] | None = None, layers: Sequence[str] = (),
                     factory: Any = None, overwrite: bool = False, privileged_probes: Sequence[str] = (), data: Any = None
                     ) -> StoreZoo:
        """A zoo from a list of same-architecture ``nn.Module`` s, written to ``out`` (without it, to a
        temporary directory that is removed when the interpreter exits).

        ``metadata`` maps column -> per-model values (lineage, labels to score against); ``probes`` maps
        probe-set name -> inputs ``[n_probes, ...]``; ``layers`` names submodules whose outputs
        extractors may read as activations; ``privileged_probes`` names the probe sets built from the
        ground truth (fingerprints on them are marked privileged in reports); ``data`` is labelled
        data, ``(x, y)`` tensors or a ``module:function`` returning them (integer ``y``: class indices,
        cross-entropy; float ``y``: regression targets, squared error), for ``lmc-barrier`` and the
        loss (``docs/zoo-format.md``, ``data.h5``).
        """
        return zoo_from_modules(modules, out, metadata, model_ids, probes, layers, factory, overwrite, privileged_probes,
                                data)
