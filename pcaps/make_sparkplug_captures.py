#!/usr/bin/env python3
"""Record the Sparkplug B test captures: Debian's mosquitto on 127.0.0.6:1883, clients on their own loopback
addresses, captured with tcpdump.

* ``sparkplug-pysparkplug.pcap`` - real peers only, a clean lifecycle (no check may fire on it):
    - host application ``scada-host`` (paho, 127.0.0.10): will = offline STATE (3.0 JSON, retained),
      subscribes ``spBv1.0/#``, publishes its online STATE, later sends an NCMD to the edge node;
    - edge node ``plant1/edge1`` (pysparkplug EdgeNode, 127.0.0.11) with device ``dev1``: NBIRTH with every
      datatype pysparkplug supports (signed extremes, UInt64 max, float/double, arrays of each kind,
      DateTime, UUID, Text, Bytes/File), DBIRTH, NDATA and DDATA updates, then a clean NDEATH and disconnect.
  The metric values published are ``NODE_METRICS``, ``DEVICE_METRICS``, ``NDATA_UPDATES``, ``DDATA_UPDATES``
  and ``NCMD_METRICS`` below: tests import them and compare with the decoded documents.
* ``sparkplug-crafted.pcap`` - payloads built with otids's compiled ``sparkplug_b_pb2`` and sent with paho,
  one actor per address, each case of the detector's checks (see ``crafted()``): aliases-only DATA with
  datatypes left out, Tahu's 32-bit two's complement for Int8, DataSet, Template, properties, a rogue
  NCMD/DCMD, STATE spoofing, a stale STATE, a cleared retained STATE, seq gap and replay, an unknown alias,
  data before birth, death without birth, a rebirth storm, a bdSeq mismatch, a 2.2 ``STATE/<host>`` text
  STATE, a wildcard subscription by a non-host, and an edge node dying without DISCONNECT (broker-sent
  NDEATH will).

pysparkplug 0.6.1 requires paho-mqtt<2 while otids's tests use paho-mqtt 2, so it is not a test dependency:
run this script from its own virtual environment (root, needs tcpdump and mosquitto)::

    python3 -m venv /tmp/spvenv && /tmp/spvenv/bin/pip install pysparkplug==0.6.1 'protobuf>=7.35'
    /tmp/spvenv/bin/python pcaps/make_sparkplug_captures.py [OUTDIR]   # default: pcaps/
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when a test loads this file by path
from mosquitto_lo import start_mosquitto, stop_mosquitto  # noqa: E402  the generators' one mosquitto helper
from tcpdump_lo import start_tcpdump, stop_tcpdump  # noqa: E402  the generators' one tcpdump helper

BROKER = "127.0.0.6"
PORT = 1883
OUT = Path(__file__).resolve().parent
T0 = 1_767_000_000_000  # fixed ms timestamps in crafted payloads (2025-12-29)


def die(msg: str) -> None:
    print(f"make_sparkplug_captures: error: {msg}", file=sys.stderr)
    sys.exit(1)


# ------------------------------------------------------------------ the values the generators publish
def _dts(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)


def metric_table():
    """(name, pysparkplug DataType name, value) published in NBIRTH; values are what a reader must decode
    (Float values are float32-exact so no rounding question arises; DateTime in ms)."""
    return [
        ("s/int8_min", "INT8", -128), ("s/int8_neg", "INT8", -5), ("s/int8_max", "INT8", 127),
        ("s/int16_neg", "INT16", -30000), ("s/int32_min", "INT32", -2 ** 31), ("s/int32_neg", "INT32", -1),
        ("s/int64_min", "INT64", -2 ** 63), ("s/int64_neg", "INT64", -123456789012),
        ("u/uint8", "UINT8", 255), ("u/uint16", "UINT16", 65535), ("u/uint32", "UINT32", 2 ** 32 - 1),
        ("u/uint64_max", "UINT64", 2 ** 64 - 1), ("u/uint64", "UINT64", 42),
        ("f/float", "FLOAT", 1.5), ("f/float_neg", "FLOAT", -0.15625), ("f/double", "DOUBLE", -2.718281828459045),
        ("b/true", "BOOLEAN", True), ("b/false", "BOOLEAN", False),
        ("t/string", "STRING", "héllo wörld"), ("t/text", "TEXT", "line one\nline two"),
        ("t/uuid", "UUID", "1b4e28ba-2fa1-11d2-883f-0016d3cca427"),
        ("t/datetime", "DATETIME", T0 + 123),
        ("x/bytes", "BYTES", b"\x00\x01\xfe\xff"), ("x/file", "FILE", b"%PDF-1.4\n"),
        ("a/int8", "INT8_ARRAY", (-128, -1, 0, 1, 127)), ("a/int16", "INT16_ARRAY", (-32768, -2, 32767)),
        ("a/int32", "INT32_ARRAY", (-2 ** 31, -3, 2 ** 31 - 1)), ("a/int64", "INT64_ARRAY", (-2 ** 63, -4, 2 ** 63 - 1)),
        ("a/uint8", "UINT8_ARRAY", (0, 128, 255)), ("a/uint16", "UINT16_ARRAY", (0, 65535)),
        ("a/uint32", "UINT32_ARRAY", (0, 2 ** 32 - 1)), ("a/uint64", "UINT64_ARRAY", (0, 2 ** 64 - 1)),
        ("a/float", "FLOAT_ARRAY", (1.5, -2.25, 0.0)), ("a/double", "DOUBLE_ARRAY", (3.141592653589793, -1e300)),
        ("a/bool", "BOOLEAN_ARRAY", (True, False, True, True, False, False, False, False, True)),
        ("a/string", "STRING_ARRAY", ("alpha", "", "gamma")),
        ("a/datetime", "DATETIME_ARRAY", (T0, T0 + 1000)),
    ]


NODE_METRICS = metric_table()
DEVICE_METRICS = [("temp", "FLOAT", 21.5), ("state", "INT16", -7), ("name", "STRING", "pump-1")]
NDATA_UPDATES = [[("s/int8_neg", "INT8", -100), ("u/uint64_max", "UINT64", 2 ** 63)],
                 [("f/double", "DOUBLE", 1e-300), ("a/int16", "INT16_ARRAY", (1, -1))]]
DDATA_UPDATES = [[("temp", "FLOAT", 22.25)], [("state", "INT16", -32768)]]
NCMD_METRICS = [("s/int8_neg", "INT8", -7)]


def _pyvalue(kind: str, v):
    if kind == "DATETIME":
        return _dts(v)
    if kind == "DATETIME_ARRAY":
        return tuple(_dts(x) for x in v)
    return v


def pysparkplug_metrics(rows, ts=T0):
    import pysparkplug as psp
    return [psp.Metric(timestamp=ts, name=n, datatype=psp.DataType[k], value=_pyvalue(k, v)) for n, k, v in rows]


# ------------------------------------------------------------------ mosquitto (tcpdump: tcpdump_lo.py)
def start_broker(tmp: Path) -> subprocess.Popen:
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {PORT} {BROKER}\nallow_anonymous true\npersistence false\n")
    try:
        return start_mosquitto(conf, BROKER, [PORT])
    except RuntimeError as e:
        die(str(e))
        raise


# ------------------------------------------------------------------ paho helpers
def client(cid: str, addr: str, will: tuple | None = None):
    import paho.mqtt.client as mqtt
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho 2 (otids's tests) or 1.x (beside pysparkplug)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311)
    else:
        c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv311)
    if will is not None:
        topic, payload, qos, retain = will
        c.will_set(topic, payload, qos, retain)
    c.connect(BROKER, PORT, keepalive=30, bind_address=addr)
    c.loop_start()
    deadline = time.monotonic() + 5
    while not c.is_connected():
        if time.monotonic() > deadline:
            die(f"{cid} did not connect")
        time.sleep(0.02)
    return c


def pub(c, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
    c.publish(topic, payload, qos, retain).wait_for_publish(5)
    time.sleep(0.05)


def close(c, clean: bool = True) -> None:
    if clean:
        c.disconnect()
        c.loop_stop()
    else:  # die without DISCONNECT: the broker publishes the will
        c.loop_stop()
        c.socket().close()
    time.sleep(0.2)


def state_json(online: bool, ts: int) -> bytes:
    return json.dumps({"online": online, "timestamp": ts}).encode()


# ------------------------------------------------------------------ capture 1: pysparkplug
def lifecycle() -> None:
    import pysparkplug as psp
    host = client("scada-host", "127.0.0.10", ("spBv1.0/STATE/scada-host", state_json(False, T0), 1, True))
    host.subscribe("spBv1.0/#", 0)
    time.sleep(0.2)
    pub(host, "spBv1.0/STATE/scada-host", state_json(True, T0), 1, True)

    dev = psp.Device("dev1", pysparkplug_metrics(DEVICE_METRICS))
    edge = psp.EdgeNode("plant1", "edge1", pysparkplug_metrics(NODE_METRICS), client=psp.Client(client_id="edge1"))
    edge.register(dev)
    edge.connect(BROKER, port=PORT, bind_address="127.0.0.11", blocking=False)
    time.sleep(1.0)
    for rows in NDATA_UPDATES:
        edge.update(pysparkplug_metrics(rows, T0 + 1))
        time.sleep(0.2)
    for rows in DDATA_UPDATES:
        edge.update_device("dev1", pysparkplug_metrics(rows, T0 + 2))
        time.sleep(0.2)
    cmd = psp.NCmd(timestamp=T0 + 3, metrics=tuple(pysparkplug_metrics(NCMD_METRICS, T0 + 3)))
    pub(host, "spBv1.0/plant1/NCMD/edge1", cmd.encode(include_dtypes=True), 0)
    time.sleep(0.5)
    edge.disconnect()
    time.sleep(0.5)
    close(host)


# ------------------------------------------------------------------ capture 2: crafted
_PB2 = []


def _pb():
    """otids's compiled schema, loaded by path (this environment need not hold otids's dependencies)."""
    if not _PB2:
        import importlib.util
        path = OUT.parent / "ids" / "protocols" / "mqtt" / "sparkplug" / "sparkplug_b_pb2.py"
        spec = importlib.util.spec_from_file_location("otids_sparkplug_b_pb2", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _PB2.append(mod)
    return _PB2[0]


def payload(seq=None, metrics=(), ts=T0):
    pb = _pb()
    p = pb.Payload()
    p.timestamp = ts
    if seq is not None:
        p.seq = seq
    for fill in metrics:
        fill(p.metrics.add())
    return p.SerializeToString()


def m(name=None, alias=None, dtype=None, **value):
    def fill(x):
        if name is not None:
            x.name = name
        if alias is not None:
            x.alias = alias
        if dtype is not None:
            x.datatype = dtype
        x.timestamp = T0
        for k, v in value.items():
            if k == "props":
                for pk, (pt, pv) in v.items():
                    x.properties.keys.append(pk)
                    val = x.properties.values.add()
                    val.type = pt
                    val.string_value = pv
            elif k == "dataset":
                columns, types, rows = v
                ds = x.dataset_value
                ds.num_of_columns = len(columns)
                ds.columns.extend(columns)
                ds.types.extend(types)
                for r in rows:
                    row = ds.rows.add()
                    for field, fv in r:
                        setattr(row.elements.add(), field, fv)
            elif k == "template":
                t = x.template_value
                t.template_ref = v["ref"]
                t.version = "v1"
                t.is_definition = False
                for pname, pval in v["params"]:
                    pa = t.parameters.add()
                    pa.name, pa.type, pa.string_value = pname, 12, pval
                for sub in v["metrics"]:
                    sub(t.metrics.add())
            else:
                setattr(x, k, v)
    return fill


#: Crafted values a test checks after decoding: (message, metric name, decoded value).
CRAFTED_VALUES = [
    ("NBIRTH", "Motor/Speed", -5),  # Int8 sent as Tahu's 32-bit two's complement
    ("NBIRTH", "Motor/Torque", -2),  # Int64 as 2**64 - 2
    ("NDATA", "Motor/Speed", -9),  # alias only, datatype from the birth
    ("DDATA", "Flow", 2.5),  # alias only, device metric
]


def crafted() -> None:
    host = client("scada-host", "127.0.0.10", ("spBv1.0/STATE/scada-host", state_json(False, T0), 1, True))
    host.subscribe("spBv1.0/#", 0)
    time.sleep(0.2)
    pub(host, "spBv1.0/STATE/scada-host", state_json(True, T0), 1, True)

    # edge2: aliases, DataSet, Template, properties, signed values as Tahu (Java) encodes them
    g = "plantB"
    e2 = client("edge2", "127.0.0.12", (f"spBv1.0/{g}/NDEATH/edge2", payload(None, [m("bdSeq", None, 4, long_value=5)]),
                                        0, False))
    birth = [m("bdSeq", None, 4, long_value=5),
             m("Motor/Speed", 1, 1, int_value=(-5) & 0xFFFFFFFF),
             m("Motor/Torque", 2, 4, long_value=(-2) & 0xFFFFFFFFFFFFFFFF),
             m("Node Control/Rebirth", 3, 11, boolean_value=False),
             m("Recipe", 4, 16, dataset=(("step", "setpoint", "label"), (3, 10, 12),
                                          [(("int_value", (-1) & 0xFFFFFFFF), ("double_value", 80.5),
                                            ("string_value", "heat")),
                                           (("int_value", 2), ("double_value", -4.25), ("string_value", "cool"))])),
             m("Valve1", 5, 19, template={"ref": "ValveType", "params": [("vendor", "acme")],
                                          "metrics": [m("Open", None, 11, boolean_value=True),
                                                      m("Position", None, 2, int_value=(-300) & 0xFFFFFFFF)]}),
             m("Tank/Level", 6, 10, double_value=42.0, props={"engUnit": (12, "m")})]
    pub(e2, f"spBv1.0/{g}/NBIRTH/edge2", payload(0, birth))
    pub(e2, f"spBv1.0/{g}/DBIRTH/edge2/pump", payload(1, [m("Flow", 100, 9, float_value=1.25)]))
    pub(e2, f"spBv1.0/{g}/NDATA/edge2", payload(2, [m(None, 1, None, int_value=(-9) & 0xFFFFFFFF)]))
    pub(e2, f"spBv1.0/{g}/DDATA/edge2/pump", payload(3, [m(None, 100, None, float_value=2.5)]))
    # the host commands (legitimate)
    pub(host, f"spBv1.0/{g}/NCMD/edge2", payload(None, [m(None, 3, 11, boolean_value=True)]))
    time.sleep(0.2)
    pub(e2, f"spBv1.0/{g}/NDATA/edge2", payload(4, [m(None, 6, None, double_value=43.0)]))

    # a rogue client: commands, reconnaissance, STATE attacks
    rogue = client("maint-laptop", "127.0.0.66")
    rogue.subscribe("spBv1.0/#", 0)
    time.sleep(0.2)
    pub(rogue, f"spBv1.0/{g}/NCMD/edge2", payload(None, [m("Node Control/Rebirth", None, 11, boolean_value=True)]))
    pub(rogue, f"spBv1.0/{g}/DCMD/edge2/pump", payload(None, [m(None, 100, 9, float_value=99.0)]))
    pub(rogue, "spBv1.0/STATE/scada-host", state_json(False, T0 + 5), 1, True)
    pub(rogue, "spBv1.0/STATE/scada-host", state_json(True, T0 - 60_000), 1, False)
    pub(rogue, "spBv1.0/STATE/scada-host", b"", 1, True)
    pub(host, "spBv1.0/STATE/scada-host", state_json(True, T0 + 10), 1, True)

    # edge2: seq gap, then a replayed seq, then an alias no birth defined
    pub(e2, f"spBv1.0/{g}/NDATA/edge2", payload(10, [m(None, 6, None, double_value=44.0)]))
    pub(e2, f"spBv1.0/{g}/NDATA/edge2", payload(9, [m(None, 6, None, double_value=44.5)]))
    pub(e2, f"spBv1.0/{g}/NDATA/edge2", payload(11, [m(None, 77, None, double_value=1.0)]))

    # edge3: data before birth; edge4: death without birth; edge5: rebirth storm; edge6: bdSeq mismatch
    e3 = client("edge3", "127.0.0.13")
    pub(e3, f"spBv1.0/{g}/NDATA/edge3", payload(0, [m("x", None, 3, int_value=1)]))
    close(e3)
    e4 = client("edge4", "127.0.0.14", (f"spBv1.0/{g}/NDEATH/edge4", payload(None, [m("bdSeq", None, 4, long_value=0)]),
                                        0, False))
    pub(e4, f"spBv1.0/{g}/NDEATH/edge4", payload(None, [m("bdSeq", None, 4, long_value=0)]))
    close(e4)
    e5 = client("edge5", "127.0.0.15", (f"spBv1.0/{g}/NDEATH/edge5", payload(None, [m("bdSeq", None, 4, long_value=1)]),
                                        0, False))
    for _ in range(6):
        pub(e5, f"spBv1.0/{g}/NBIRTH/edge5", payload(0, [m("bdSeq", None, 4, long_value=1), m("y", 1, 3, int_value=7)]))
        time.sleep(0.2)
    close(e5)
    e6 = client("edge6", "127.0.0.16", (f"spBv1.0/{g}/NDEATH/edge6", payload(None, [m("bdSeq", None, 4, long_value=3)]),
                                        0, False))
    pub(e6, f"spBv1.0/{g}/NBIRTH/edge6", payload(0, [m("bdSeq", None, 4, long_value=4)]))
    close(e6)

    # Sparkplug 2.2 host STATE (text), then edge2 dies without DISCONNECT: the broker sends its will
    legacy = client("legacy-host", "127.0.0.17")
    pub(legacy, "STATE/legacy-host", b"ONLINE", 1, True)
    close(legacy)
    close(e2, clean=False)
    time.sleep(0.5)
    close(rogue)
    close(host)


def record(name: str, fn, outdir: Path, tmp: Path) -> None:
    out = outdir / name
    broker = start_broker(tmp)
    try:
        dump = start_tcpdump(out, f"host {BROKER} and tcp port {PORT}")
        try:
            fn()
        finally:
            stop_tcpdump(dump)
    finally:
        stop_mosquitto(broker)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


def main() -> None:
    outdir = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    with tempfile.TemporaryDirectory() as t:
        record("sparkplug-pysparkplug.pcap", lifecycle, outdir, Path(t))
        record("sparkplug-crafted.pcap", crafted, outdir, Path(t))


if __name__ == "__main__":
    main()
