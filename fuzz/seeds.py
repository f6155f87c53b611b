"""Seed inputs for the harnesses of fuzz/harnesses.py, cut from real files: the payloads of each protocol's
flows in captures (in the session input format: TCP segments, UDP datagrams or non-IP frames), capture
heads, certificates, and the shipped config, registry, baseline and rule files. Sources are read in place
(pcaps/, ../shared/corpus): never copied into the repository beyond the small committed set in fuzz/seeds/.

Usage: python3 fuzz/seeds.py OUTDIR [--harness NAME] [--from PATH...] [--max-seeds N] [--max-len BYTES]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.harnesses import HARNESSES, encode_record  # noqa: E402

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")


def _captures(sources: list[Path]) -> list[Path]:
    out = []
    for s in sources:
        if s.is_file() and s.name.lower().endswith(CAPTURE_SUFFIXES):
            out.append(s)
        elif s.is_dir():
            out += sorted(p for p in s.rglob("*") if p.is_file() and p.name.lower().endswith(CAPTURE_SUFFIXES))
    return out


def session_seeds(proto: str, sources: list[Path], max_seeds: int, max_len: int) -> list[bytes]:
    return all_session_seeds([proto], sources, max_seeds, max_len)[proto]


def all_session_seeds(protos: list[str], sources: list[Path], max_seeds: int, max_len: int) -> dict:
    """Per flow of each protocol (its spec's transports and ports, with the configured ports of a dissected
    one; a protocol without a port by its content probe): its payloads in capture order, as session records.
    One pass over the captures for every protocol. Flows the protocol's probe accepts come first, so a
    port several protocols share (102: S7comm, S7comm-plus, MMS) gives each its own."""
    from ids.capture import open_capture
    from ids.config import Config
    from ids.decode import Decoder
    from ids.decode.packet import ETHER
    from ids.errors import CaptureError
    from ids.protocols import REGISTRY

    cfg_ports = Config().protocols.ports
    by_port: dict[tuple[str, int], list[str]] = {}  # (transport, server port) -> protocols
    portless: dict[str, list[str]] = {"tcp": [], "udp": []}
    for proto in protos:
        spec = REGISTRY[proto]
        ports = set(spec.ports) | set(cfg_ports.get(proto, []))
        for t in spec.transport.split("/"):
            if not ports and t in portless:
                portless[t].append(proto)
            for port in ports:
                by_port.setdefault((t, port), []).append(proto)
    # (proto, flow key) -> [buffer, probe accepted, payloads probed]
    flows: dict[str, dict[tuple, list]] = {p: {} for p in protos}
    for path in _captures(sources):
        if all(len(f) >= 8 * max_seeds for f in flows.values()):
            break
        dec = Decoder("off")
        seen: dict[str, dict[tuple, list]] = {p: {} for p in protos}
        try:
            reader = open_capture(str(path))
            for ts, lt, frame in reader.packets():
                p = dec.decode(ts, lt, frame)
                if p is None:
                    continue
                if p.proto == ETHER:
                    names = by_port.get(("ether", p.sport), ())
                    if not names:
                        continue
                    a, b = sorted((p.src, p.dst))
                    key, to_client, head = (a, b, p.sport), p.src != a, 0
                else:
                    t = "tcp" if p.proto == 6 else "udp" if p.proto == 17 else None
                    if t is None:
                        continue
                    if (t, p.dport) in by_port:
                        names, key, to_client = by_port[(t, p.dport)], (p.src, p.sport, p.dst, p.dport), False
                    elif (t, p.sport) in by_port:
                        names, key, to_client = by_port[(t, p.sport)], (p.dst, p.dport, p.src, p.sport), True
                    elif portless[t] and p.payload:
                        names, key, to_client = portless[t], (p.src, p.sport, p.dst, p.dport), False
                    else:
                        continue
                    # bit 0: picked up mid-stream (no SYN seen from the client); bit 1: UDP; bits 2-4: the port
                    server_port = key[3]
                    head = 2 if t == "udp" else 0
                    if t == "tcp" and not (p.flags & 0x02 and not to_client):
                        head |= 1
                for proto in names:
                    f = seen[proto]
                    st = f.get(key)
                    if st is None:
                        if len(f) >= 8 * max_seeds or p.proto != ETHER and not p.payload and p.proto != 6:
                            continue
                        h = head
                        if p.proto != ETHER:
                            ports = REGISTRY[proto].ports
                            h |= (ports.index(server_port) & 7) << 2 if server_port in ports else 0
                        st = f[key] = [bytearray([h]), False, 0]
                    buf = st[0]
                    if p.payload and len(buf) < max_len:
                        buf += encode_record(to_client, p.payload)
                        spec = REGISTRY[proto]
                        if not st[1] and st[2] < 4 and spec.probe is not None:
                            st[2] += 1
                            try:
                                st[1] = spec.probe(p.payload, not to_client) > 0
                            except Exception:  # noqa: BLE001 - a seed is a seed; the fuzzer finds probe bugs
                                pass
            reader.close()
        except (CaptureError, OSError):
            pass
        for proto in protos:
            for key, st in seen[proto].items():
                # a portless protocol, or one sharing its EtherType (PROFINET DCP, RT): only flows its probe names
                if st[1] or REGISTRY[proto].ports and "ether" not in REGISTRY[proto].transport:
                    flows[proto][(path, key)] = st
    out = {}
    for proto in protos:
        ranked = sorted((st for st in flows[proto].values() if len(st[0]) > 1), key=lambda st: not st[1])
        out[proto] = [bytes(st[0][:max_len]) for st in ranked[:max_seeds]]
    return out


def _opening_messages() -> dict[str, list[tuple[bool, bytes]]]:
    """The opening exchange of each protocol that neither pcaps/ nor ../shared/corpus carries (the IT
    protocols, CIP I/O, PROFINET IO CM, OPC DA): the first messages after each specification, the same
    bytes tests/test_identify.py checks the content probes with, as (to_client, payload). A stand-in
    until real captures of them are committed: tests/test_fuzz.py holds that each is named as its protocol."""
    import struct
    import uuid
    pnio = uuid.UUID("dea00001-6c97-11d1-8271-00a02442df7d").bytes_le  # PNIO device interface
    iopc = uuid.UUID("39c13a4d-011e-11d0-9675-0020afd8adb3").bytes_le  # IOPCServer
    krb = bytes.fromhex("6a81a03081a0a103020105a20302010a") + bytes(8)  # AS-REQ: pvno 5, msg-type 10
    return {
        "cip_io": [(False, struct.pack("<HHHIIHH", 2, 0x8002, 8, 1, 7, 0x00B1, 6) + b"\x07\x00\x01\x00\x00\x00")],
        "ftp": [(True, b"220 ProFTPD Server ready\r\n"), (False, b"USER anonymous\r\n"),
                (True, b"331 Password required\r\n"), (False, b"PASS x@y\r\n"), (True, b"230 Logged in\r\n")],
        "kerberos": [(False, krb), (True, bytes.fromhex("7e0b3009a003020105a103020119"))],
        "ldap": [(False, bytes.fromhex("300c020101600702010304008000")),  # bind request, simple, empty
                 (True, bytes.fromhex("300c02010161070a010004000400"))],  # bind response, success
        "ntp": [(False, bytes([0x23]) + bytes(47)), (True, bytes([0x24, 2]) + bytes(46))],
        # a cyclic RT frame: frame id 0x8000, 40 data bytes, cycle counter, data status, transfer status
        "profinet_rt": [(False, b"\x80\x00" + bytes(40) + b"\x12\x34\x35\x00")],
        "opc_da": [(False, bytes.fromhex("05000b03100000004800000001000000d016d016000000000100000000000100")
                    + iopc + bytes(24))],
        # a connect request: version 4, request, little-endian; object UUID (PNIO, instance 1, device 2,
        # vendor 0x2a), interface UUID (PNIO device)
        "profinet_io_cm": [(False, bytes([4, 0, 0x20, 0]) + b"\x10\x00\x00\x00"
                            + uuid.UUID("dea00000-6c97-11d1-8271-00010002002a").bytes_le + pnio + bytes(40))],
        "rdp": [(False, bytes.fromhex("0300002722e00000000000") + b"Cookie: mstshash=user\r\n"
                 + bytes.fromhex("0100080003000000"))],
        "snmp": [(False, bytes.fromhex("302902010104067075626c6963a01c02040000000102010002010030"
                                       "0e300c06082b060102010101000500"))],
        "ssh": [(True, b"SSH-2.0-OpenSSH_9.2\r\n"), (False, b"SSH-2.0-OpenSSH_9.6\r\n")],
        "syslog": [(False, b"<34>1 2026-12-05T08:00:00Z host app - - - hi")],
        "telnet": [(True, b"\xff\xfd\x18\xff\xfd\x20"), (False, b"\xff\xfb\x18"), (True, b"login: ")],
        "tftp": [(False, b"\x00\x01boot.bin\x00octet\x00"), (True, b"\x00\x03\x00\x01" + bytes(512))],
        "vnc": [(True, b"RFB 003.008\n"), (False, b"RFB 003.008\n"), (True, b"\x01\x02")],
    }


def opening_seeds(proto: str) -> list[bytes]:
    """One seed from the protocol's opening messages, over each of its transports (first port)."""
    from fuzz.harnesses import session_head
    from ids.protocols import REGISTRY
    msgs = _opening_messages().get(proto)
    if not msgs:
        return []
    out = []
    for t in REGISTRY[proto].transport.split("/"):
        out.append(bytes([session_head(proto, t)]) + b"".join(encode_record(c, m) for c, m in msgs))
    return out


def capture_seeds(sources: list[Path], max_seeds: int, max_len: int) -> list[bytes]:
    out = []
    for p in _captures(sources)[:max_seeds]:
        with open(p, "rb") as fh:
            out.append(fh.read(max_len))
    return out


def cert_seeds(sources: list[Path], max_seeds: int) -> list[bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    out = []
    for s in sources:
        files = [s] if s.is_file() else sorted(s.rglob("*")) if s.is_dir() else []
        for f in files:
            if f.suffix in (".der", ".crt", ".cer"):
                out.append(f.read_bytes())
            elif f.suffix == ".pem":
                try:
                    out += [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(f.read_bytes())]
                except ValueError:
                    pass
    return out[:max_seeds]


def text_seeds(harness: str, max_seeds: int, max_len: int) -> list[bytes]:
    files = {
        "config_file": ["otids.example.yaml", "deploy/otids-live.yaml"],
        "registry_file": ["pcaps/auth-registry.yaml", "deploy/registry.example.yaml"],
        "baseline_file": ["models/sim-baseline.yaml"],
        "rules_file": ["rules/modbus.yml", "rules/mqtt.yml", "rules/opcua.yml", "rules/lists.example.yml"]
                      + [str(p.relative_to(ROOT)) for p in sorted((ROOT / "rules" / "suricata").glob("*"))[:3]],
        "model_file": [],
    }[harness]
    out = [(ROOT / f).read_bytes()[:max_len] for f in files if (ROOT / f).is_file()]
    if harness == "model_file":
        out.append(b'{"format": "otids-ml-model/1", "feature_set": {"hop": 10, "windows": [60], "lateness": 5, '
                   b'"version": 1, "names": [], "id": "x"}, "algorithm": "iforest", "arrays": {}, "id": "y"}')
    return out[:max_seeds]


def es_answer_seeds() -> list[bytes]:
    """`_bulk` answers as Elasticsearch writes them (created, conflict, rejected, whole-request error)."""
    ok = {"took": 3, "errors": False, "items": [{"create": {"_index": ".ds-logs-otids.alert-default-2026.12.05-000001",
                                                            "_id": "a1", "_version": 1, "result": "created",
                                                            "status": 201, "_seq_no": 0, "_primary_term": 1}}]}
    mixed = {"took": 5, "errors": True, "items": [
        {"create": {"_index": "i", "_id": "a", "status": 201, "result": "created"}},
        {"create": {"_index": "i", "_id": "b", "status": 409, "error": {
            "type": "version_conflict_engine_exception", "reason": "[b]: version conflict, document already exists"}}},
        {"create": {"_index": "i", "_id": "c", "status": 400, "error": {
            "type": "document_parsing_exception", "reason": "[1:20] failed to parse field [source.port]",
            "caused_by": {"type": "number_format_exception", "reason": "For input string: \"x\""}}}},
        {"index": {"_index": "i", "_id": "d", "status": 429, "error": {"type": "es_rejected_execution_exception",
                                                                       "reason": "rejected execution"}}}]}
    whole = {"error": {"root_cause": [{"type": "illegal_argument_exception", "reason": "bad"}],
                       "type": "illegal_argument_exception", "reason": "bad"}, "status": 400}
    return [bytes([1]) + json.dumps(ok).encode(), bytes([4]) + json.dumps(mixed).encode(),
            bytes([1]) + json.dumps(whole).encode(), bytes([1]) + b"<html><h1>502 Bad Gateway</h1></html>"]


def probe_seeds(proto: str, sessions: list[bytes], max_seeds: int, max_len: int) -> list[bytes]:
    """The payloads of the protocol's session seeds (`sessions`), one per input (first byte 1: to the
    server), as the identifier hands them to the probe."""
    from fuzz.harnesses import records
    out: list[bytes] = []
    for seed in sessions or opening_seeds(proto):
        for flags, payload, *_ in records(seed[1:]):
            if payload:
                out.append(bytes([0 if flags & 1 else 1]) + payload[:max_len])
    return list(dict.fromkeys(out))[:4 * max_seeds]


def build(harness: str, sources: list[Path], max_seeds: int = 16, max_len: int = 8192) -> list[bytes]:
    if harness.startswith("probe_"):
        return probe_seeds(harness[6:], session_seeds(harness[6:], sources, max_seeds, max_len), max_seeds, max_len)
    if harness.startswith("session_"):
        return session_seeds(harness[8:], sources, max_seeds, max_len) or opening_seeds(harness[8:])
    if harness in ("capture", "pipeline"):
        return capture_seeds(sources, max_seeds, max_len)
    if harness == "es_bulk_answer":
        return es_answer_seeds()
    if harness == "x509":
        return cert_seeds([ROOT / "pcaps" / "opcua-certs", ROOT / "pcaps" / "auth-pki", ROOT / "pcaps" / "mqtt-tls-certs"]
                          + [s for s in sources if s.is_dir()], max_seeds)
    return text_seeds(harness, max_seeds, max_len)


def write(seeds: list[bytes], out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for s in seeds:
        (out / hashlib.sha1(s).hexdigest()).write_bytes(s)
    return len(seeds)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="folder to write into (one sub-folder per harness)")
    ap.add_argument("--harness", action="append", choices=sorted(HARNESSES), help="default: all")
    ap.add_argument("--from", dest="sources", action="append", default=None,
                    help="capture files or folders (default: pcaps/)")
    ap.add_argument("--max-seeds", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=8192)
    a = ap.parse_args(argv)
    sources = [Path(s) for s in (a.sources or [str(ROOT / "pcaps")])]
    todo = a.harness or sorted(HARNESSES)
    protos = sorted({h.split("_", 1)[1] for h in todo if h.startswith(("session_", "probe_"))})
    sessions = all_session_seeds(protos, sources, a.max_seeds, a.max_len)  # one pass over the captures
    for h in todo:
        if h.startswith("session_"):
            seeds = sessions[h[8:]] or opening_seeds(h[8:])
        elif h.startswith("probe_"):
            seeds = probe_seeds(h[6:], sessions[h[6:]], a.max_seeds, a.max_len)
        else:
            seeds = build(h, sources, a.max_seeds, a.max_len)
        n = write(seeds, Path(a.out) / h)
        print(f"{h}: {n} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
