"""What the pipeline's long stages report, as one small protocol (light to import: the CLI's bars
subclass it without loading torch)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, ContextManager


class Progress:
    """What the long stages report. Every method does nothing here; the CLI's subclass draws bars."""

    def stage(self, index: int, total: int, title: str, detail: str = "") -> None:
        """A pipeline stage begins (``index`` of ``total``); ``detail`` names what it works on."""

    def note(self, text: str) -> None:
        """A line for the user about the stage under way (e.g. the default fingerprints it leaves out, and why)."""

    def sweep_started(self, n_models: int, n_done: int, total_steps: int) -> None:
        """Training begins: ``n_done`` of ``n_models`` are already trained, ``total_steps`` model-steps to go."""

    def sweep_advanced(self, model_steps: int) -> None:
        """``model_steps`` more model-steps were trained."""

    def shard_finished(self, n_models: int) -> None:
        """A shard of ``n_models`` is on disk."""

    def extraction(self, spec: str, done: int, total: int) -> None:
        """Fingerprint ``spec``: ``done`` of ``total`` models."""

    def extracted(self, results: list[Any]) -> None:
        """Fingerprints computed (or found in the cache); failed ones carry their ``error``."""

    def analysing(self) -> ContextManager[Any]:
        """Around clustering, bootstrap and scoring."""
        return nullcontext()


SILENT = Progress()
