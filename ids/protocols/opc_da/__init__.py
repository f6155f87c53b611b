"""OPC Data Access (Classic OPC over DCOM / DCE/RPC): identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after OPC Foundation Data Access Custom Interface Standard 3.00 (interface IIDs IOPCServer 39C13A4D-011E-11D0-9675-0020AFD8ADB3 and family, OpcEnum CLSID 13486D44-4821-11D2-A494-3CB306C10000) over MS-DCOM / C706.
"""
from __future__ import annotations

from ..framing.dcerpc import co_header, le_bytes, uuid_in
from ..spec import ProtocolSpec


OPC_UUIDS = le_bytes(
    "39c13a4d-011e-11d0-9675-0020afd8adb3",  # IOPCServer
    "39c13a50-011e-11d0-9675-0020afd8adb3",  # IOPCGroupStateMgt
    "39c13a52-011e-11d0-9675-0020afd8adb3",  # IOPCSyncIO
    "39c13a53-011e-11d0-9675-0020afd8adb3",  # IOPCAsyncIO
    "39c13a54-011e-11d0-9675-0020afd8adb3",  # IOPCItemMgt
    "39c13a70-011e-11d0-9675-0020afd8adb3",  # IOPCDataCallback
    "39c13a71-011e-11d0-9675-0020afd8adb3",  # IOPCAsyncIO2
    "39227004-a18f-4b57-8b0a-5235670f4468",  # IOPCBrowse
    "f31dfde2-07b6-11d2-b2d8-0060083ba1fb",  # IOPCCommon
    "13486d50-4821-11d2-a494-3cb306c10000",  # IOPCServerList
    "9dd0b56c-ad9e-43ee-8305-487f3188bf7a",  # IOPCServerList2
    "13486d44-4821-11d2-a494-3cb306c10000",  # OpcEnum CLSID (DCOM activation)
    "63d5f430-cfe4-11d1-b2c8-0060083ba1fb",  # CATID_OPCDAServer20
)


def probe(buf: bytes, to_server: bool) -> int:
    """A connection-oriented DCE/RPC PDU that names an OPC DA interface or OpcEnum."""
    if co_header(buf) is None:
        return 0
    return 1 if uuid_in(buf, OPC_UUIDS) else 0


PROTOCOL = ProtocolSpec(name="opc_da", transport="tcp", ports=(), probe=probe, session=None,
                        roles={'server': 'opc_da_server', 'client': 'opc_da_client'}, category="ics",
                        description="OPC Data Access (Classic OPC over DCOM / DCE/RPC)", extra={'refines': 'dcerpc'})
