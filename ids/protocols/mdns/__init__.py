"""Multicast DNS: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after RFC 6762: DNS messages on UDP 5353 (224.0.0.251, ff02::fb).
"""
from __future__ import annotations

from ..spec import ProtocolSpec
from ..dns import probe


PROTOCOL = ProtocolSpec(name="mdns", transport="udp", ports=(5353,), probe=probe, session=None,
                        roles={'server': 'mdns_responder', 'client': 'mdns_client'}, category="it",
                        description="Multicast DNS", extra={'refines': 'dns'})
