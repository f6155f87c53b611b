"""Give up root once the capture sockets are open: switch to an unprivileged user and keep, at most,
CAP_NET_RAW (only needed to reopen an interface that was removed and re-created; open sockets go on
working without it). Everything else is dropped from the effective, permitted, inheritable, ambient and
bounding sets, and no_new_privs stops any exec from regaining it.

Done with prctl(2)/capset(2) through ctypes, so no extra dependency. Linux only, like AF_PACKET.
"""
from __future__ import annotations

import ctypes
import os
import pwd

from ..errors import UserError

CAP_NET_RAW = 13
CAP_SETPCAP = 8
PR_CAPBSET_DROP = 24
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _prctl(libc, *args) -> None:
    if libc.prctl(*[ctypes.c_ulong(a) for a in args] + [ctypes.c_ulong(0)] * (5 - len(args))) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl{args}: {os.strerror(e)}")


def _capset(libc, caps: int) -> None:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = caps & 0xFFFFFFFF
    data[1].effective = data[1].permitted = caps >> 32
    if libc.capset(ctypes.byref(hdr), ctypes.byref(data)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"capset: {os.strerror(e)}")


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as fh:
            return int(fh.read())
    except OSError:  # pragma: no cover - very old kernels
        return 40


def drop_privileges(user: str | None, keep_net_raw: bool = True) -> str:
    """Switch to `user` (None: stay who we are, still shedding every capability but CAP_NET_RAW) and
    keep only CAP_NET_RAW if asked. Returns a one-line description of the result for the log."""
    libc = _libc()
    keep = (1 << CAP_NET_RAW) if keep_net_raw else 0
    if os.geteuid() != 0 and user is None:
        # Started unprivileged with ambient capabilities (systemd AmbientCapabilities=, file caps): we
        # can only narrow what we were given, never add.
        keep &= capabilities().get("CapPrm", 0)
        keep_net_raw = bool(keep)
    if user is not None:
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise UserError(f"live.user: no such user {user!r}") from None
    try:
        # Bounding set first: dropping from it needs CAP_SETPCAP, which goes with the rest below.
        for cap in range(_last_cap() + 1):
            if cap == CAP_NET_RAW and keep_net_raw:
                continue
            try:
                _prctl(libc, PR_CAPBSET_DROP, cap)
            except OSError:
                break  # no CAP_SETPCAP (already unprivileged): nothing more to shed here
        try:
            _prctl(libc, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
        except OSError:  # pragma: no cover - kernels before 4.3
            pass
        if user is not None and os.getuid() != pw.pw_uid:
            _prctl(libc, PR_SET_KEEPCAPS, 1)  # keep the permitted set across the uid change
            os.setgroups([])
            os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
            os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
            _prctl(libc, PR_SET_KEEPCAPS, 0)
        _capset(libc, keep)
        _prctl(libc, PR_SET_NO_NEW_PRIVS, 1)
    except PermissionError as e:
        raise UserError(f"cannot drop privileges to {user or 'the current user'}: {e.strerror or e} "
                        "(start as root, or with CAP_SETUID/CAP_SETGID)") from None
    return (f"running as {pwd.getpwuid(os.getuid()).pw_name} (uid {os.getuid()}), capabilities: "
            f"{'cap_net_raw' if keep_net_raw else 'none'}")


def capabilities() -> dict[str, int]:
    """CapEff/CapPrm/CapBnd/CapAmb/CapInh of this process as ints, and its uid/gid (for tests and logs)."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            if k.startswith("Cap"):
                out[k] = int(v.strip(), 16)
            elif k in ("Uid", "Gid"):
                out[k] = int(v.split()[1])  # effective
            elif k == "NoNewPrivs":
                out[k] = int(v.strip())
    return out
