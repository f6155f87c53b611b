"""`otids assets PCAP... [--json | --csv] [-o FILE]`: the passive asset inventory of some captures."""
from __future__ import annotations

import csv
import io
import json
import sys

from ..errors import missing_captures


def register(sub) -> None:
    p = sub.add_parser("assets", help="list the devices seen in captures (inventory)",
                       description="Build a passive asset inventory from pcap/pcapng files: each device by IP "
                                   "with MACs and their vendor (IEEE registry via Wireshark's manuf), VLANs, "
                                   "roles, protocols identified on its flows, services offered and used, "
                                   "vendor/product/revision from Modbus FC 43/14 and FC 17, OPC UA and MQTT "
                                   "identities, first and last seen. Every host seen is listed, whatever it speaks.")
    p.add_argument("pcaps", nargs="+", metavar="PCAP", help="capture files (pcap, pcapng, .gz)")
    from ..parallel.options import add_workers_argument
    add_workers_argument(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON (a list of assets)")
    fmt.add_argument("--csv", action="store_true", help="CSV, one row per asset")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    p.add_argument("-c", "--config", metavar="FILE", help="YAML configuration (port map, caps)")
    p.set_defaults(func=cmd_assets)


class InventoryDetector:
    """Feeds every event to an Inventory; raises no alerts."""

    def __init__(self, inventory):
        self.inventory = inventory
        self.observe = inventory.observe

    def on_event(self, ev):
        self.observe(ev)

    def flush(self, ts):
        return None


def run_inventory(paths: list[str], config, workers: int = 1):
    from ..pipeline import Run
    from ..assets import Inventory

    err = missing_captures(paths)
    if err is not None:
        raise err
    inv = Inventory(config.limits.assets_bytes)
    run = Run(config, [InventoryDetector(inv)], [], [])
    from ..parallel import run_files
    run_files(run, paths, workers)
    return inv, run


def cmd_assets(args) -> int:
    from ..config import load_config

    config = load_config(args.config)
    from ..parallel.options import workers_for
    inv, run = run_inventory(args.pcaps, config, workers_for(args, args.pcaps))
    d = inv.capped()
    if d:  # limits.assets_bytes: the inventory is partial, say what is missing
        print(f"otids assets: warning: the inventory reached limits.assets_bytes ({d['max_bytes']:,} bytes): "
              f"{d['addresses_not_kept']:,} addresses and {d['peers_not_kept']:,} peers not kept", file=sys.stderr)
    recs = inv.records()
    if args.json:
        text = json.dumps(recs, indent=2, ensure_ascii=False) + "\n"
    elif args.csv:
        text = to_csv(recs)
    else:
        text = to_table(recs)
    if run.errors and run.decoder.stats.packets == 0:  # nothing analysed: exit 2, as `analyze`, no empty table
        for err in run.errors:
            print(f"otids: error: {err}", file=sys.stderr)
        left = f"; {args.output} left as it was" if args.output else ""
        print(f"otids: error: nothing analysed (no packet read){left}", file=sys.stderr)
        return 2
    if args.output:
        from ..output.safefile import write_text
        write_text(args.output, text, "assets")
    else:
        sys.stdout.write(text)
    for err in run.errors:
        print(f"otids: error: {err}", file=sys.stderr)
    return 1 if run.errors else 0


CSV_FIELDS = ["ip", "macs", "mac_vendors", "vlans", "roles", "protocols", "services", "uses", "vendor", "product_code",
              "revision", "product_name", "model_name", "modbus_server_id", "opcua_application_uri",
              "opcua_product_uri", "opcua_application_name", "mqtt_client_ids", "mqtt_usernames", "certificates", "peers", "first_seen", "last_seen", "events"]


def _modbus_field(r: dict, name: str) -> str:
    mb = (r.get("identity") or {}).get("modbus") or {}
    vals = [objs[name] for _, objs in sorted(mb.items()) if objs.get(name)]
    return ";".join(dict.fromkeys(vals))


def to_csv(recs: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in recs:
        idn = r["identity"]
        w.writerow({
            "ip": r["ip"], "macs": ";".join(m["mac"] for m in r["macs"]),
            "mac_vendors": ";".join(m["vendor"] or "" for m in r["macs"]), "vlans": ";".join(r["vlans"]),
            "roles": ";".join(r["roles"]), "protocols": ";".join(r.get("protocols", [])), "services": ";".join(r["services"]), "uses": ";".join(r["uses"]),
            "vendor": _modbus_field(r, "vendor_name"), "product_code": _modbus_field(r, "product_code"),
            "revision": _modbus_field(r, "major_minor_revision"), "product_name": _modbus_field(r, "product_name"),
            "model_name": _modbus_field(r, "model_name"),
            "modbus_server_id": ";".join(v for _, v in sorted((idn.get("modbus_server_id") or {}).items())),
            "opcua_application_uri": ";".join(idn.get("opcua_application_uri", [])),
            "opcua_product_uri": ";".join(idn.get("opcua_product_uri", [])),
            "opcua_application_name": ";".join(idn.get("opcua_application_name", [])),
            "mqtt_client_ids": ";".join(idn.get("mqtt_client_id", [])),
            "mqtt_usernames": ";".join(idn.get("mqtt_username", [])),
            "certificates": ";".join(str(c.get("subject") or c.get("sha256")) for c in r["certificates"]),
            "peers": r["peers"], "first_seen": r["first_seen"], "last_seen": r["last_seen"], "events": r["events"],
        })
    return buf.getvalue()


def to_table(recs: list[dict]) -> str:
    """A plain text table (stable for pipes and tests; no terminal width guessing)."""
    head = ["IP", "MAC (vendor)", "VLAN", "ROLES", "PROTOCOLS", "SERVICES", "VENDOR / PRODUCT / REVISION",
            "FIRST SEEN", "LAST SEEN", "EVENTS"]
    rows = []
    for r in recs:
        # notes such as "(locally administered)" come in their own parentheses: not wrapped twice
        macs = ", ".join(f"{m['mac']} {v}" if v.startswith("(") else f"{m['mac']} ({v})" if v else m["mac"]
                         for m in r["macs"] for v in [m["vendor"] or ""]) or "-"
        svc = ", ".join(r["services"]) or ("uses " + ", ".join(r["uses"]) if r["uses"] else "-")
        rows.append([r["ip"], macs, ", ".join(r["vlans"]) or "-", ", ".join(r["roles"]) or "-",
                     ", ".join(r.get("protocols", [])) or "-", svc,
                     r["summary"] or "-", r["first_seen"][:19] + "Z", r["last_seen"][:19] + "Z", str(r["events"])])
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip() for row in [head] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"{len(recs)} asset(s)")
    return "\n".join(lines) + "\n"
