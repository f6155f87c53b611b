"""Command line of the authentication checks: `otids analyze --registry FILE --trust-store DIR` (an analyze
plug-in: add_arguments / build; the checks run by default, `--no-auth` turns them off) and
`otids certs PCAP...`, the certificate inventory for audits: every certificate seen with its verdicts, as a
table or JSON. Both judge with the same code (verdicts.py), so the table and the alerts agree.
"""
from __future__ import annotations

import argparse
import sys
from collections import OrderedDict

from ..errors import missing_captures
from ..detect.auth.certs import Finding, TrustStore
from ..detect.auth.context import load_context
from ..detect.auth.registry import Registry
from ..detect.auth.verdicts import CertJudge, opcua_identity, tls_identity, ts_datetime
from ..detect.auth.views import SeenCert, opcua_certificates, tls_certificates, tls_handshake
from ..x509 import uris_in

EXIT_OK, EXIT_DAMAGED = 0, 1
MAX_ROWS = 100_000
MAX_FLOWS_PER_ROW = 4096  # beyond: connections are counted by change of flow, not remembered
SEV_ORDER = ("info", "low", "medium", "high", "critical")


def _context_args(g) -> None:
    g.add_argument("--registry", metavar="FILE",
                   help="device registry YAML (deploy/registry.example.yaml): expected identities and the site's "
                        "authentication policy")
    g.add_argument("--trust-store", metavar="DIR",
                   help="directory of trusted CA certificates (.pem/.crt/.der) and CRLs (.crl); default: the "
                        "registry's trust_store")


# ---------------------------------------------------------------------------------------------- analyze

def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("device authentication (certificates, OPC UA security, MQTT credentials)")
    _context_args(g)
    g.add_argument("--no-auth", action="store_true", help="do not run the authentication checks")


def build(args, config):
    if getattr(args, "no_auth", False):
        return [], [], []
    from ..detect.auth.detector import AuthDetector
    reg, store = load_context(args)
    det = AuthDetector(reg, store, limits=config.limits)
    det.context_args = args  # SIGHUP re-reads the registry and trust store named here
    return [det], [], []


# ---------------------------------------------------------------------------------------------- certs

def register(sub) -> None:
    p = sub.add_parser("certs", help="list every certificate seen, with its verdicts (audit)",
                       description="List every certificate that OPC UA and TLS peers present in the captures "
                                   "(protocol, role, endpoints, subject, issuer, validity, key, signature "
                                   "algorithm, SHA-256) with the verdicts of the certificate checks, judged at "
                                   "the time each was seen. TLS 1.3 handshakes, whose certificates are encrypted, "
                                   "are listed apart. Exit code 1 when a capture was damaged.")
    p.add_argument("pcaps", nargs="+", metavar="PCAP", help="capture files (pcap, pcapng, .gz)")
    p.add_argument("--json", action="store_true", help="JSON on stdout instead of the table")
    _context_args(p)
    p.add_argument("-c", "--config", metavar="FILE", help="YAML configuration (protocol settings)")
    p.set_defaults(func=cmd_certs)


class CertInventory:
    """A detector that raises nothing: it keeps one row per (protocol, role, certificate, client, server)."""

    def __init__(self, registry: Registry | None, store: TrustStore | None):
        self.registry = registry if registry is not None and registry.devices else None
        policy = registry.policy if registry is not None else None
        from ..detect.auth.registry import AuthPolicy
        self.judge = CertJudge(store, (policy or AuthPolicy()).cert_policy())
        self.rows: OrderedDict[tuple, dict] = OrderedDict()
        self.unobservable: OrderedDict[tuple, dict] = OrderedDict()
        self.truncated = 0

    def on_event(self, ev):
        ds = getattr(ev, "dataset", None)
        if ds == "otids.opcua":
            if ev.certificates:
                for sc in opcua_certificates(ev):
                    self._add(ev, sc)
        elif ds == "otids.tls":
            hs = tls_handshake(ev)
            f = ev.flow
            if hs.identity_observable is False:
                k = (f.client_ip, f.server_ip, f.server_port)
                r = self.unobservable.get(k)
                if r is None and len(self.unobservable) < MAX_ROWS:
                    self.unobservable[k] = {"protocol": "tls", "version": hs.version, "application": hs.application,
                                            "client_ip": f.client_ip, "server_ip": f.server_ip,
                                            "server_port": f.server_port, "first_seen": _iso(ev.ts),
                                            "connections": 1, "verdict": "client identity not observable (TLS 1.3)"}
                elif r is not None:
                    r["connections"] += 1
            for sc in tls_certificates(ev, hs):
                self._add(ev, sc)
        return None

    def flush(self, ts):
        return None

    def _add(self, ev, sc: SeenCert) -> None:
        f = ev.flow
        doc = sc.doc
        sha = (doc.get("hash") or {}).get("sha256", "")
        key = (sc.protocol, sc.role, sha, f.client_ip, f.server_ip, f.server_port)
        row = self.rows.get(key)
        if row is None:
            if len(self.rows) >= MAX_ROWS:
                self.truncated += 1
                return
            row = self.rows[key] = _row(sc, doc, f, ev.ts)
            row["_flows"] = set()
            row["_verdicts"] = {}
            for fi in self.judge.findings(doc, ev.ts):
                row["_verdicts"][(fi.check, fi.message)] = fi
        row["last_seen"] = _iso(ev.ts)
        flows = row["_flows"]
        if f.flow_id not in flows:
            if len(flows) >= MAX_FLOWS_PER_ROW:  # count on, remember no more
                row["_more_flows"] = row.get("_more_flows", 0) + (f.flow_id != row.get("_last_flow"))
            else:
                flows.add(f.flow_id)
        row["_last_flow"] = f.flow_id
        for fi in self._identity(sc):
            row["_verdicts"].setdefault((fi.check, fi.message), fi)
        if row.get("device") is None:
            row["device"] = self._device(sc)

    def _identity(self, sc: SeenCert) -> list[Finding]:
        x = sc.doc.get("x509") or {}
        out = []
        if sc.protocol == "opcua" and sc.role in ("client", "server"):
            san = set(uris_in(x.get("alternative_names")))
            if sc.claimed_uri and san and sc.claimed_uri not in san:
                out.append(Finding("application_uri_mismatch", "high",
                                   f"ApplicationUri {sc.claimed_uri} is not the certificate's {', '.join(sorted(san))}"))
            uris = san | ({sc.claimed_uri} if sc.claimed_uri else set())
            fs, _ = opcua_identity(self.registry, sc.ip, sc.role, uris, (sc.doc.get("hash") or {}).get("sha256"),
                                   (x.get("issuer") or {}).get("distinguished_name"))
            out += fs
        elif sc.protocol == "tls" and sc.role == "client":
            subj = x.get("subject") or {}
            fs, _ = tls_identity(self.registry, sc.ip, subj.get("distinguished_name"), list(subj.get("common_name") or ()))
            out += fs
        return out

    def _device(self, sc: SeenCert) -> str | None:
        if self.registry is None:
            return None
        d = self.registry.device_at(sc.ip)
        return d.name if d is not None else None

    def result(self) -> list[dict]:
        out = []
        for row in self.rows.values():
            r = {k: v for k, v in row.items() if not k.startswith("_")}
            r["connections"] = len(row["_flows"]) + row.get("_more_flows", 0)
            vs = sorted(row["_verdicts"].values(), key=lambda f: (-SEV_ORDER.index(f.severity), f.check, f.message))
            r["verdicts"] = [{"check": v.check, "severity": v.severity, "message": v.message} for v in vs]
            threats = [v for v in vs if v.severity != "info"]
            r["status"] = threats[0].severity if threats else "unverified" if vs else "ok"
            out.append(r)
        out.sort(key=lambda r: (r["protocol"], r["server_ip"], r["server_port"], r["role"], r["client_ip"],
                                r.get("subject") or "", r["sha256"]))
        return out


def _iso(ts: int) -> str:
    return ts_datetime(ts).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _row(sc: SeenCert, doc: dict, f, ts: int) -> dict:
    x = doc.get("x509") or {}
    h = doc.get("hash") or {}
    row = {"protocol": sc.protocol, "role": sc.role, "application": sc.application,
           "client_ip": f.client_ip, "server_ip": f.server_ip, "server_port": f.server_port,
           "first_seen": _iso(ts), "last_seen": _iso(ts),
           "subject": (x.get("subject") or {}).get("distinguished_name"),
           "issuer": (x.get("issuer") or {}).get("distinguished_name"),
           "not_before": x.get("not_before"), "not_after": x.get("not_after"),
           "serial_number": x.get("serial_number"),
           "key": {"algorithm": x.get("public_key_algorithm"), "size": x.get("public_key_size"),
                   "curve": x.get("public_key_curve")},
           "signature_algorithm": x.get("signature_algorithm"),
           "sha256": str(h.get("sha256", "")).upper(), "sha1": str(h.get("sha1", "")).upper() or None,
           "alternative_names": x.get("alternative_names") or [],
           "chain": [{"subject": ((c.get("x509") or {}).get("subject") or {}).get("distinguished_name"),
                      "issuer": ((c.get("x509") or {}).get("issuer") or {}).get("distinguished_name"),
                      "sha256": str((c.get("hash") or {}).get("sha256", "")).upper()} for c in doc.get("chain") or []],
           "device": None}
    if doc.get("error"):
        row["error"] = doc["error"]
    return row


def cmd_certs(args) -> int:
    import json

    from ..config import load_config
    from ..pipeline import Run

    config = load_config(args.config)
    err = missing_captures(args.pcaps)  # a directory is not "no such capture file"
    if err is not None:
        raise err
    reg, store = load_context(args)
    inv = CertInventory(reg, store)
    run = Run(config, [inv], [], [])
    for p in args.pcaps:
        run.analyze_file(p)
    run.finish()
    if run.errors and run.decoder.stats.packets == 0:  # nothing analysed: exit 2, as `analyze`, no empty table
        for err in run.errors:
            print(f"otids: error: {err}", file=sys.stderr)
        print("otids: error: nothing analysed (no packet read)", file=sys.stderr)
        return 2
    rows = inv.result()
    hidden = list(inv.unobservable.values())
    if args.json:
        doc = {"files": list(args.pcaps), "registry": getattr(args, "registry", None),
               "trust_store": store.source if store else None, "certificates": rows,
               "not_observable": hidden, "truncated": inv.truncated}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        _table(rows, hidden, store, inv.truncated)
    for err in run.errors:
        print(f"otids: error: {err}", file=sys.stderr)
    return EXIT_DAMAGED if run.errors else EXIT_OK


_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim",
          "ok": "green", "unverified": "dim"}


def _table(rows: list[dict], hidden: list[dict], store, truncated: int) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    c = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    t = Table(title=f"Certificates seen: {len(rows)}", title_justify="left", show_lines=True)
    t.add_column("certificate (subject / issuer / SHA-256)", overflow="fold", ratio=3)
    t.add_column("seen", overflow="fold", ratio=2)
    t.add_column("validity / key / signature", overflow="fold", ratio=2)
    t.add_column("verdicts", overflow="fold", ratio=4)
    for r in rows:
        k = r["key"]
        key = " ".join(str(v) for v in (k.get("algorithm"), k.get("size"), k.get("curve")) if v)
        cert = Text(r.get("subject") or r.get("error") or "?", "bold")
        cert.append(f"\nissuer: {r.get('issuer') or '?'}\nSHA-256: {r['sha256']}", "")
        seen = (f"{r['protocol']}{'/' + r['application'] if r.get('application') else ''} {r['role']}"
                f"{' (' + r['device'] + ')' if r.get('device') else ''}\n{r['client_ip']} -> "
                f"{r['server_ip']}:{r['server_port']}\n{r['connections']} connection(s)")
        valid = f"{(r['not_before'] or '?')[:10]} .. {(r['not_after'] or '?')[:10]}\n{key or '?'}\n" \
                f"{r.get('signature_algorithm') or '?'}"
        verd = Text()
        if not r["verdicts"]:
            verd.append("ok", _STYLE["ok"])
        for i, v in enumerate(r["verdicts"]):
            if i:
                verd.append("\n")
            verd.append(f"{v['check']} ({v['severity']})", _STYLE[v["severity"]])
            verd.append(f": {v['message']}")
        t.add_row(cert, seen, valid, verd)
    c.print(t)
    if hidden:
        h = Table(title="TLS 1.3 handshakes: certificates encrypted, client identity not observable",
                  title_justify="left")
        for col in ("client", "server", "application", "connections"):
            h.add_column(col)
        for r in hidden:
            h.add_row(r["client_ip"], f"{r['server_ip']}:{r['server_port']}", r.get("application") or "-",
                      str(r["connections"]))
        c.print(h)
    if store is None:
        c.print("no trust store given (--trust-store or the registry's trust_store): chains were not verified")
    if truncated:
        c.print(f"[yellow]{truncated} further certificate sighting(s) not listed: more than {MAX_ROWS} rows[/yellow]")
