"""Every core for one run: `--workers N` divides a capture's packets among N processes by host pair and
merges their events back into the one order a single process gives (ids.parallel.runner, .shard)."""
from .runner import WorkerFailed, default_workers, run_files

__all__ = ["WorkerFailed", "default_workers", "run_files"]
