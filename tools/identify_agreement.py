"""Protocol identification agreement, per flow, between otids (network.protocol of its connection records) and
tshark (the deepest protocol it dissects in the flow's packets), and nDPI's own results where the corpus holds
them (ndpi/result/*.out). TCP and UDP flows only (tshark names non-IP frames per frame, not per pair).

    python3 tools/identify_agreement.py [CAPTURE...] [--json] [--no-ndpi]

Without captures it runs every capture in ../shared/corpus and pcaps/. Per flow the verdict is one of
  agree        both name it and the names agree (a refinement counts: OPC DA inside tshark's DCE/RPC)
  disagree     both name it differently
  otids_only   tshark shows no application protocol (data or nothing), otids names it
  tshark_only  tshark names it, otids does not
  neither      nobody names it (handshake-only flows, unknown payload)
The figure quoted is agree / (agree + disagree + tshark_only): of the flows tshark can name, the share
otids names the same way.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's ids, not an installed one

CORPUS = ROOT.parent / "shared" / "corpus"

# tshark's names are mapped to otids' by ids.flow.deep (the deep mode's own table)
#: otids name -> the more general name another tool may use for the same flow
REFINES = {"opc_da": "dcerpc", "profinet_io_cm": "dcerpc", "mdns": "dns", "llmnr": "dns", "cip_io": "enip",
           "s7comm_plus": "s7comm", "smb": "netbios", "nfs": "sunrpc"}
NDPI_LINE = re.compile(r"\t\d+\t(TCP|UDP) \[?([0-9a-fA-F.:]+?)\]?:(\d+) <-> \[?([0-9a-fA-F.:]+?)\]?:(\d+) "
                       r".*?\[proto: [\d.]+/([^\]]+)\]")


def same(a: str, b: str) -> bool:
    return a == b or REFINES.get(a) == b or REFINES.get(b) == a


def tshark_flows(path: Path) -> dict:
    """flow key -> Counter of names tshark gives its packets (None: no application layer)."""
    from ids.flow.deep import FIELDS, parse
    cmd = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=\t"]
    for f in FIELDS:
        cmd += ["-e", f]
    return parse(subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.splitlines())


def otids_flows(path: Path, use_ndpi: bool = True) -> dict:
    from ids.config import Config, ProtocolsConfig
    from ids.flow.conn import ConnRecord
    from ids.pipeline import analyze

    cfg = Config()
    if not use_ndpi:
        cfg = cfg.replace(protocols=ProtocolsConfig(ndpi=False))
    _run, col = analyze([str(path)], cfg, detectors=[])
    out: dict = {}
    for e in col.events:
        if type(e) is ConnRecord and e.transport in ("tcp", "udp"):
            key = (e.transport, frozenset(((e.client_ip, e.client_port), (e.server_ip, e.server_port))))
            if out.get(key) is None:
                out[key] = e.protocol
    return out


def ndpi_flows(path: Path) -> dict:
    res = path.parent.parent / "result" / (path.name + ".out")
    out: dict = {}
    if not res.is_file():
        return out
    from ids.flow.ndpi import otids_names
    for m in NDPI_LINE.finditer(res.read_text(errors="replace")):
        tr, a, ap, b, bp, name = m.groups()
        names = otids_names(name)
        out[(tr.lower(), frozenset(((a, int(ap)), (b, int(bp)))))] = names[0] if names else None
    return out


def compare(ours: dict, theirs: dict) -> collections.Counter:
    c: collections.Counter = collections.Counter()
    for key, mine in ours.items():
        other = theirs.get(key)
        if other is None and key not in theirs:
            continue  # flows the other tool did not see as one (fragments, ICMP-carried)
        if mine and other:
            c["agree" if same(mine, other) else "disagree"] += 1
        elif mine:
            c["otids_only"] += 1
        elif other:
            c["tshark_only"] += 1
        else:
            c["neither"] += 1
    return c


def figure(c: collections.Counter) -> float | None:
    den = c["agree"] + c["disagree"] + c["tshark_only"]
    return c["agree"] / den if den else None


def captures() -> list[Path]:
    sys.path.insert(0, str(ROOT / "tools"))
    import golden
    return [p for _, p in golden.captures()]


def run(paths: list[Path], use_ndpi: bool = True) -> dict:
    per: dict = {}
    total: collections.Counter = collections.Counter()
    ndpi_total: collections.Counter = collections.Counter()
    disagreements: list = []
    for p in paths:
        ours = otids_flows(p, use_ndpi)
        from ids.flow.deep import flow_names
        theirs = flow_names(tshark_flows(p))  # the most common named opinion per flow
        c = compare(ours, theirs)
        total.update(c)
        entry = {"flows": len(ours), **c}
        nd = ndpi_flows(p)
        if nd:
            cn = compare(ours, nd)
            ndpi_total.update(cn)
            entry["ndpi"] = dict(cn)
        per[str(os.path.relpath(p, ROOT))] = entry
        for k, mine in ours.items():
            other = theirs.get(k)
            if mine and other and not same(mine, other):
                disagreements.append((str(os.path.relpath(p, ROOT)), sorted(map(str, k[1])), mine, other))
    return {"captures": per, "total": dict(total), "agreement": figure(total), "ndpi_total": dict(ndpi_total),
            "ndpi_agreement": figure(ndpi_total), "disagreements": disagreements}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("captures", nargs="*")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-ndpi", action="store_true", help="otids' own probes and port table only")
    args = ap.parse_args(argv)
    paths = [Path(p) for p in args.captures] or captures()
    res = run(paths, not args.no_ndpi)
    if args.json:
        print(json.dumps(res, indent=1, default=str))
        return 0
    for name, e in res["captures"].items():
        if e["flows"]:
            print(f"{name}: {e['flows']} flows, " + ", ".join(f"{k} {v}" for k, v in sorted(e.items())
                                                                   if k not in ("flows", "ndpi")))
    t = res["total"]
    print("total: " + ", ".join(f"{k} {v}" for k, v in sorted(t.items())))
    if res["agreement"] is not None:
        print(f"agreement with tshark: {res['agreement']:.1%} of the {t.get('agree', 0) + t.get('disagree', 0) + t.get('tshark_only', 0)} flows tshark names")
    if res["ndpi_agreement"] is not None:
        print(f"agreement with the corpus' nDPI results: {res['ndpi_agreement']:.1%} ({res['ndpi_total']})")
    for d in res["disagreements"][:40]:
        print("  disagree:", *d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
