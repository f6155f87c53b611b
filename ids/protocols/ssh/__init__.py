"""Secure Shell: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after RFC 4253 section 4.2: identification string 'SSH-protoversion-softwareversion'.
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """The identification string."""
    if len(buf) < 4:
        return -1 if b"SSH-".startswith(buf) else 0
    return 1 if buf[:4] == b"SSH-" else 0


PROTOCOL = ProtocolSpec(name="ssh", transport="tcp", ports=(22,), probe=probe, session=None,
                        roles={'server': 'ssh_server', 'client': 'ssh_client'}, category="it",
                        description="Secure Shell", extra={'it_kind': 'remote_access'})
