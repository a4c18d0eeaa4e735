"""Worker entry point: ``python -m training.worker ZOO SHARD [--device D] [--threads T] [--parent PID]``.

Trains one shard of a planned zoo and exits 0 once its file is in place. Used by the process
executor (and usable by any scheduler that can run a command).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

# Nothing heavy at import: torch and the trainer are imported in main(), once the parent watch has
# started. Importing them takes seconds on a loaded host, and a sweep killed in those seconds must
# not leave a worker that only notices after its imports (seen on a loaded 2-core CI host).


def exit_with_parent(parent: int, interval: float = 0.2) -> None:
    """Exit as soon as process ``parent`` (the sweep that started this worker) is no longer this
    worker's parent. A sweep killed with ``kill -9`` cannot stop its workers; an orphan would go on
    training a shard that ``--resume`` trains again, on the same cores. A shard is only written at
    the end, so nothing half-written is left. (The pid comes from the command line: a parent that
    died while the worker was still importing torch would otherwise go unnoticed.)"""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(3)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.worker")
    ap.add_argument("zoo")
    ap.add_argument("shard")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--parent", type=int, default=0, help="exit when this process is no longer the worker's parent")
    args = ap.parse_args(argv)
    if args.parent:
        exit_with_parent(args.parent)
    import torch

    from training.core.errors import DiskFullError, UserError  # deferred: start-up
    from training.executors import DISK_FULL_EXIT  # deferred: start-up
    from training.shard import train_shard  # deferred: start-up

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        train_shard(Path(args.zoo), args.shard, args.device)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return DISK_FULL_EXIT if isinstance(e, DiskFullError) else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
