"""Link-Local Multicast Name Resolution: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after RFC 4795: DNS-format messages on UDP/TCP 5355 (224.0.0.252, ff02::1:3).
"""
from __future__ import annotations

from ..spec import ProtocolSpec
from ..dns import probe


PROTOCOL = ProtocolSpec(name="llmnr", transport="tcp/udp", ports=(5355,), probe=probe, session=None,
                        roles={'server': 'llmnr_responder', 'client': 'llmnr_client'}, category="it",
                        description="Link-Local Multicast Name Resolution", extra={'refines': 'dns'})
