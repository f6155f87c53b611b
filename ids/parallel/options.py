"""The `--workers` option of analyze, assets and learn, and the default it takes."""
from __future__ import annotations

import os

#: Below this much capture in total the default is one process: forking and merging cost more than they save.
SMALL_INPUT = 16 << 20
#: From this many cores up the default leaves one core to the parent (it merges and runs the whole-network
#: detectors); below it every core gets a worker: since the anomaly checks run in the workers the parent is
#: mostly idle, and on 2 cores `--workers 2` measured 1.2-1.3x faster than one process (docs/PERFORMANCE.md).
MIN_CORES = 4
#: ids.parallel.shard.Router keeps a bucket's worker in one byte
MAX_WORKERS = 255


def add_workers_argument(p) -> None:
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes to analyse with, packets divided by host pair; output identical for any N "
                        "(default for captures of 16 MB or more: one per CPU core, but one core left to the "
                        "parent on machines with 4 or more; else 1)")


def workers_for(args, paths: list[str]) -> int:
    """--workers as given (at least 1), else one per core for large inputs; --deep keeps one process."""
    from ..errors import UserError
    from .runner import default_workers

    n = getattr(args, "workers", None)
    if n is not None:
        if n < 1:
            raise UserError(f"--workers must be at least 1 (got {n})")
        if n > MAX_WORKERS:
            raise UserError(f"--workers must be at most {MAX_WORKERS} (got {n})")
        if getattr(args, "deep", False) and n > 1:
            raise UserError("--deep runs in one process: use --workers 1")
        return n
    if getattr(args, "deep", False):
        return 1
    total = 0
    for p in paths:
        try:
            total += os.path.getsize(p)
        except OSError:
            pass
    cores = default_workers()
    if total < SMALL_INPUT or cores < 2:
        return 1
    return cores - 1 if cores >= MIN_CORES else cores
