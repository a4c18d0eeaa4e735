"""Time ``fingerprint import --hf`` of 16 tiny GPT-2-style models plus 3 fingerprints (issue 24's target: < 60 s).

Builds 4 bases x (1 + 3 fine-tunes) with ``tests/hf_models.py`` (seeded, local, nothing downloaded),
then runs the real commands in fresh processes, as a user would, and times each (start-up of
Python, torch and transformers included):

    fingerprint import MODELS --hf --probes-text prompts.txt --out ZOO
    fingerprint extract ZOO --fp probe-outputs --fp anomalous-inputs --fp weight-spectra

    OMP_NUM_THREADS=1 python scripts/bench_hf_import.py [--width 64] [--layers 2] [--prompts 64]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import hf_models as H  # noqa: E402 - tests/hf_models.py


def timed(*args: str) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fingerprint.cli", *args], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=64)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t = time.perf_counter()
        parents = H.population(d / "models", "gpt2", bases=4, children=3, width=args.width, layers=args.layers)
        H.prompts(d / "prompts.txt", n=args.prompts)
        built = time.perf_counter() - t
        imp = timed("import", str(d / "models"), "--hf", "--probes-text", str(d / "prompts.txt"), "--out", str(d / "zoo"))
        ext = timed("extract", str(d / "zoo"), "--fp", "probe-outputs", "--fp", "anomalous-inputs", "--fp", "weight-spectra")
    print(f"{len(parents)} GPT-2-style models (n_embd {args.width}, {args.layers} layers, {H.EMBED_ROWS} embedding rows), "
          f"{args.prompts} prompts; built in {built:.1f} s (not counted)")
    print(f"import {imp:.1f} s + extract 3 fingerprints {ext:.1f} s = {imp + ext:.1f} s (target < 60 s)")


if __name__ == "__main__":
    main()
