"""Alert counts on every capture in ../shared/corpus, before and after a change, and findings reported twice.

"Before" is the golden alerts file of each capture at a git revision (default: main), "after" is what this
checkout's `analyze` writes now with the golden settings (shipped rules, demo lists, auth registry). A finding
is reported twice when one triggering exchange (same time and flow) raises two alerts with the same rule name
under different ids, two alerts identical but for their event.id, or a correlated pair otids now folds into one
(SecurityPolicy None beside the same session's anonymous/password alert). Prints a table and totals.

    python3 tools/alert_counts.py [--before REV] [--only SUBSTR] [--json]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from golden import _run, captures  # noqa: E402

FOLDED = {"otids.auth.opcua.policy_none": ("otids.auth.opcua.anonymous_over_none",
                                           "otids.auth.opcua.credentials_exposed")}


def docs_of(text: str) -> list[dict]:
    return [json.loads(ln) for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def before(rev: str, name: str) -> list[dict] | None:
    p = f"tests/golden/{name}.alerts.gz"
    r = subprocess.run(["git", "show", f"{rev}:{p}"], cwd=ROOT, capture_output=True)
    if r.returncode != 0:
        return None
    return docs_of(gzip.decompress(r.stdout).decode())


def after(path: Path) -> list[dict]:
    os.chdir(ROOT)
    rel = os.path.relpath(path, ROOT)
    with tempfile.TemporaryDirectory() as td:
        a = os.path.join(td, "a.ndjson")
        _run(["analyze", rel, "-q", "-o", a, "--rules", "rules", "--lists", "pcaps/modbus-demo.lists.yml",
              "--registry", "pcaps/auth-registry.yaml"])
        try:
            return docs_of(Path(a).read_text())
        except FileNotFoundError:
            return []


def _without_id(d: dict) -> str:
    d = json.loads(json.dumps(d))
    d["event"].pop("id", None)
    return json.dumps(d, sort_keys=True)


def twice(docs: list[dict]) -> int:
    """Alerts that repeat a finding another alert of the same exchange already reports."""
    by_exchange: dict = {}
    for d in docs:
        k = (d.get("@timestamp"), (d.get("network") or {}).get("community_id"))
        by_exchange.setdefault(k, []).append(d)
    n = 0
    for group in by_exchange.values():
        names = Counter((d["rule"]["name"].lower(), d["rule"]["id"]) for d in group)
        by_name = Counter(nm for nm, _ in names)
        n += sum(c - 1 for c in by_name.values() if c > 1)
        same = Counter(_without_id(d) for d in group)  # the same alert twice, but for its id
        n += sum(c - 1 for c in same.values() if c > 1)
    flows: dict = {}
    for d in docs:
        flows.setdefault((d.get("network") or {}).get("community_id"), set()).add(d["rule"]["id"])
    for ids in flows.values():
        for a, bs in FOLDED.items():
            if a in ids and any(b in ids for b in bs):
                n += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="main", help="git revision whose golden alerts are 'before' (default main)")
    ap.add_argument("--only", help="captures whose name contains this")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    for name, path in captures():
        if not name.startswith("corpus/") or (args.only and args.only not in name):
            continue
        b = before(args.before, name)
        a = after(path)
        rows.append({"capture": name, "before": None if b is None else len(b), "after": len(a),
                     "twice_before": None if b is None else twice(b), "twice_after": twice(a)})
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        w = max((len(r["capture"]) for r in rows), default=10)
        print(f"{'capture':<{w}}  before  after  twice-before  twice-after")
        for r in rows:
            if r["before"] or r["after"]:
                print(f"{r['capture']:<{w}}  {r['before'] if r['before'] is not None else '-':>6}  {r['after']:>5}  "
                      f"{r['twice_before'] if r['twice_before'] is not None else '-':>12}  {r['twice_after']:>11}")
    tb = sum(r["before"] or 0 for r in rows)
    ta = sum(r["after"] for r in rows)
    print(f"totals: {len(rows)} captures ({sum(1 for r in rows if r['before'] or r['after'])} with alerts); "
          f"alerts before {tb}, after {ta}; reported twice before {sum(r['twice_before'] or 0 for r in rows)}, "
          f"after {sum(r['twice_after'] for r in rows)}", file=sys.stderr if args.json else sys.stdout)
    return 1 if any(r["twice_after"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
