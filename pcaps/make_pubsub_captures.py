#!/usr/bin/env python3
"""Record ``pubsub-mqtt.pcap``: OPC UA PubSub (OPC 10000-14) over Debian's mosquitto on 127.0.0.6:1883, paho
clients on their own loopback addresses, captured with tcpdump.

* ``uadp-pub`` (127.0.0.20): a JSON ``ua-metadata`` naming its fields (``UADP_NAMES``), then UADP
  NetworkMessages built with asyncua's ``UadpNetworkMessage.to_binary()`` (PublisherId 4711, WriterGroupId 7,
  DataSetWriter 11, Variant fields ``UADP_ROWS``) on ``opcua/uadp/data/4711/7/11``; then the same writer's DataSetMessage behind a UADP security header (Sign,
  token 3, an 8-byte nonce, a 32-byte signature after the payload: asyncua writes no security header, so
  these bytes are assembled here from its DataSetMessage) under PublisherId 4712;
* ``json-pub`` (127.0.0.21): a JSON ``ua-metadata`` and JSON ``ua-data`` NetworkMessages (reversible
  Variant encoding, ``JSON_ROWS``) for PublisherId ``press-1`` on ``opcua/json/...``, and one ``ua-data`` on
  ``factory/press-1/pubsub`` (no Part 14 topic: recognised by content);
* ``historian`` (127.0.0.22) subscribes ``opcua/#`` and ``factory/#``.

Usage (root, needs tcpdump, mosquitto, paho-mqtt 2 and asyncua)::

    python3 pcaps/make_pubsub_captures.py [OUTDIR]   # default: pcaps/
"""
from __future__ import annotations

import json
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sparkplug_captures import OUT, client, close, pub, record  # noqa: E402

#: (double, int32, string, uint16 array) per UADP message, in field order 0..3
UADP_ROWS = [(3.5, -7, "on", [1, 2, 3]), (3.75, -8, "on", [1, 2, 4]), (4.0, -9, "off", [1, 2, 5])]
#: JSON ua-data payload fields per message
JSON_ROWS = [{"Temperature": 71.25, "Pressure": -3, "Running": True},
             {"Temperature": 72.5, "Pressure": -4, "Running": True}]


def uadp(pub_id: int, seq: int, row) -> bytes:
    from asyncua import ua
    from asyncua.pubsub.uadp import (UadpDataSetMessageHeader, UadpDataSetVariant, UadpGroupHeader, UadpHeader,
                                     UadpNetworkMessage, UInt16)
    d, i, s, arr = row
    ds = UadpDataSetVariant(Header=UadpDataSetMessageHeader(SequenceNo=UInt16(seq)),
                            Data=[ua.Variant(d, ua.VariantType.Double), ua.Variant(i, ua.VariantType.Int32),
                                  ua.Variant(s, ua.VariantType.String), ua.Variant(arr, ua.VariantType.UInt16)])
    msg = UadpNetworkMessage(Header=UadpHeader(PublisherId=UInt16(pub_id)),
                             GroupHeader=UadpGroupHeader(WriterGroupId=UInt16(7), SequenceNo=UInt16(seq)),
                             DataSetPayloadHeader=[UInt16(11)], Payload=[ds])
    return msg.to_binary()


def uadp_signed(pub_id: int, seq: int, row) -> bytes:
    """Part 14 7.2.2.2: the same message with ExtendedFlags1 bit 4 (security) and a security header (7.2.2.2.3):
    SecurityFlags (signed), SecurityTokenId, NonceLength, MessageNonce; the signature follows the payload."""
    plain = uadp(pub_id, seq, row)
    assert plain[0] == 0xF1 and plain[1] == 0x01  # version 1, PublisherId, group and payload header, ExtFlags1
    # flags (2) + PublisherId (2) + group header (1 + 2 + 2) + payload header (1 + 2)
    head = 2 + 2 + 5 + 3
    sec = struct.pack("<BIB", 0x01, 3, 8) + bytes(range(8))
    return bytes([0xF1, 0x01 | 0x10]) + plain[2:head] + sec + plain[head:] + b"\x5a" * 32


def json_data(rows_from: int, topic_seq: int, row: dict) -> bytes:
    types = {float: 11, int: 6, bool: 1}  # Double, Int32, Boolean
    return json.dumps({"MessageId": f"m-{topic_seq}", "MessageType": "ua-data", "PublisherId": "press-1",
                       "WriterGroupName": "grp",
                       "Messages": [{"DataSetWriterId": 21, "DataSetWriterName": "press-values",
                                     "SequenceNumber": rows_from, "MessageType": "ua-keyframe",
                                     "Timestamp": "2026-12-05T07:00:00Z",
                                     "Payload": {k: {"Type": types[type(v)], "Body": v} for k, v in row.items()}}]
                      }).encode()


def json_metadata() -> bytes:
    return json.dumps({"MessageId": "md-1", "MessageType": "ua-metadata", "PublisherId": "press-1",
                       "DataSetWriterId": 21,
                       "MetaData": {"Name": "PressValues",
                                    "Fields": [{"Name": "Temperature", "BuiltInType": 11},
                                               {"Name": "Pressure", "BuiltInType": 6},
                                               {"Name": "Running", "BuiltInType": 1}]}}).encode()


#: Names of the UADP fields of PublisherId 4711, writer 11, announced in JSON ua-metadata (4712 gets none)
UADP_NAMES = ("Speed", "Count", "Mode", "Histogram")


def uadp_metadata() -> bytes:
    types = (11, 6, 12, 5)  # Double, Int32, String, UInt16
    return json.dumps({"MessageId": "md-2", "MessageType": "ua-metadata", "PublisherId": "4711",
                       "DataSetWriterId": 11,
                       "MetaData": {"Name": "DriveValues",
                                    "Fields": [{"Name": n, "BuiltInType": t} for n, t in zip(UADP_NAMES, types)]}
                       }).encode()


def scenario() -> None:
    hist = client("historian", "127.0.0.22")
    hist.subscribe([("opcua/#", 0), ("factory/#", 0)])
    time.sleep(0.2)
    up = client("uadp-pub", "127.0.0.20")
    pub(up, "opcua/json/metadata/4711/7/11", uadp_metadata(), 0, True)
    for n, row in enumerate(UADP_ROWS):
        pub(up, "opcua/uadp/data/4711/7/11", uadp(4711, n + 1, row))
        time.sleep(0.1)
    pub(up, "opcua/uadp/data/4712/7/11", uadp_signed(4712, 1, UADP_ROWS[0]))
    jp = client("json-pub", "127.0.0.21")
    pub(jp, "opcua/json/metadata/press-1/grp/press-values", json_metadata(), 0, True)
    for n, row in enumerate(JSON_ROWS):
        pub(jp, "opcua/json/data/press-1/grp/press-values", json_data(n + 1, n, row))
        time.sleep(0.1)
    pub(jp, "factory/press-1/pubsub", json_data(3, 9, JSON_ROWS[0]))
    time.sleep(0.3)
    for c in (up, jp, hist):
        close(c)


def main() -> None:
    outdir = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    with tempfile.TemporaryDirectory() as t:
        record("pubsub-mqtt.pcap", scenario, outdir, Path(t))


if __name__ == "__main__":
    main()
