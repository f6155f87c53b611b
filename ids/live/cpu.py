"""Where the CPU goes during a `bench-live` step: the machine's time by kind (/proc/stat: user, system,
softirq, idle), and the user and system time of every thread of the sensor and its workers and of the
kernel's softirq threads (/proc/PID/task/TID/stat), taken before and after a replay and subtracted.

Only reads /proc; what the figures mean is left to the caller (ids.live.bench prints them). Without
CONFIG_IRQ_TIME_ACCOUNTING the softirq work done on return from a system call (the veth receive path that
tcpreplay's send() triggers) is charged to that process's system time, not to /proc/stat's softirq.
"""
from __future__ import annotations

import os

TICK = os.sysconf("SC_CLK_TCK")
_KINDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def machine() -> dict[str, float]:
    """Seconds of every CPU together, by kind, since boot."""
    with open("/proc/stat") as fh:
        parts = fh.readline().split()[1:1 + len(_KINDS)]
    return {k: int(v) / TICK for k, v in zip(_KINDS, parts)}


def _stat(path: str) -> tuple[str, int, float, float] | None:
    """(name, ppid, user s, system s) of one /proc stat file, or None if the task is gone."""
    try:
        with open(path) as fh:
            raw = fh.read()
    except OSError:
        return None
    name = raw[raw.index("(") + 1:raw.rindex(")")]
    f = raw[raw.rindex(")") + 2:].split()  # f[0] is field 3 (state)
    return name, int(f[1]), int(f[11]) / TICK, int(f[12]) / TICK


def children(pid: int) -> list[int]:
    """Direct children of pid, in pid order."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(f"/proc/{d}/stat")
            if st is not None and st[1] == pid:
                out.append(int(d))
    return sorted(out)


def threads(pid: int) -> dict[int, tuple[str, float, float]]:
    """tid -> (thread name, user s, system s) for every live thread of pid, and 0 -> the whole process
    (its threads that ended included)."""
    out = {}
    st = _stat(f"/proc/{pid}/stat")
    if st is not None:
        out[0] = (st[0], st[2], st[3])
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        st = _stat(f"/proc/{pid}/task/{t}/stat")
        if st is not None:
            out[int(t)] = (st[0], st[2], st[3])
    return out


def softirq_threads() -> list[int]:
    return sorted(int(d) for d in os.listdir("/proc") if d.isdigit()
                  and (_stat(f"/proc/{d}/stat") or ("",))[0].startswith("ksoftirqd/"))


class Sample:
    """Taken at the start and at the end of a step; `end - start` gives the step's figures."""

    def __init__(self, sensor_pid: int, workers: list[int], ksoftirqd: list[int]):
        self.machine = machine()
        self.procs = {"sensor": threads(sensor_pid)}
        for k, w in enumerate(workers):
            self.procs[f"worker {k + 1}"] = threads(w)
        for p in ksoftirqd:
            th = threads(p)
            if 0 in th:  # labelled by its name, ksoftirqd/N
                self.procs[th[0][0]] = th

    def __sub__(self, start: "Sample") -> dict:
        """{'machine': {kind: s}, 'procs': {label: (user s, sys s, {"name/tid": (user, sys)})}}."""
        m = {k: self.machine[k] - start.machine[k] for k in _KINDS}
        procs = {}
        for label, th in self.procs.items():
            before = start.procs.get(label, {})
            per: dict[str, tuple[float, float]] = {}
            total = (0.0, 0.0)
            for tid, (name, u, s) in th.items():
                _n, u0, s0 = before.get(tid, (name, 0.0, 0.0))
                if tid == 0:
                    total = (u - u0, s - s0)
                else:
                    per[f"{name}/{tid}"] = (u - u0, s - s0)
            procs[label] = (*total, per)
        return {"machine": m, "procs": procs}
