"""Worker entry point: ``python -m training.worker ZOO SHARD [--device D] [--threads T]``.

Trains one shard of a planned zoo and exits 0 once its file is in place. Used by the process
executor (and usable by any scheduler that can run a command).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from fingerprint.errors import UserError
from training.sweep import train_shard


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.worker")
    ap.add_argument("zoo")
    ap.add_argument("shard")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        train_shard(Path(args.zoo), args.shard, args.device)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
