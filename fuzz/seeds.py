"""Seed inputs for the harnesses of fuzz/harnesses.py, cut from real files: TCP payloads of the protocol
flows in captures (in the session input format), capture heads, certificates, and the shipped config,
registry, baseline and rule files. Sources are read in place (pcaps/, ../shared/corpus): never copied
into the repository beyond the small committed set in fuzz/seeds/ that `--commit` writes.

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

from fuzz.harnesses import HARNESSES, SESSION_PORTS, encode_record  # noqa: E402

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
    """Per flow on the protocol's port: its payloads in capture order, as session records."""
    from ids.capture import open_capture
    from ids.decode import Decoder
    from ids.errors import CaptureError

    from ids.config import Config
    ports = set(Config().protocols.ports.get(proto, [])) | {SESSION_PORTS[proto]}
    seeds: list[bytes] = []
    for path in _captures(sources):
        if len(seeds) >= max_seeds:
            break
        flows: dict[tuple, bytearray] = {}
        dec = Decoder("off")
        try:
            reader = open_capture(str(path))
            for ts, lt, frame in reader.packets():
                p = dec.decode(ts, lt, frame)
                if p is None or p.proto != 6:
                    continue
                if p.dport in ports:
                    key, to_client = (p.src, p.sport, p.dst, p.dport), False
                elif p.sport in ports:
                    key, to_client = (p.dst, p.dport, p.src, p.sport), True
                else:
                    continue
                buf = flows.get(key)
                if buf is None:
                    if len(flows) >= max_seeds:
                        continue
                    # bit 0 of the first byte: picked up mid-stream (no SYN seen from the client)
                    buf = flows[key] = bytearray(b"\x00" if p.flags & 0x02 and not to_client else b"\x01")
                if p.payload and len(buf) < max_len:
                    buf += encode_record(to_client, p.payload)
            reader.close()
        except (CaptureError, OSError):
            pass
        seeds += [bytes(b[:max_len]) for b in flows.values() if len(b) > 1]
    return seeds[:max_seeds]


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


def build(harness: str, sources: list[Path], max_seeds: int = 16, max_len: int = 8192) -> list[bytes]:
    if harness.startswith("session_"):
        return session_seeds(harness[8:], sources, max_seeds, max_len)
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
    for h in a.harness or sorted(HARNESSES):
        n = write(build(h, sources, a.max_seeds, a.max_len), Path(a.out) / h)
        print(f"{h}: {n} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
