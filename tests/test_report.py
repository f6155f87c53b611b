"""`otids report`: the same documents give the same report whether they come from captures or from an earlier
run's NDJSON files; the file refers to nothing outside itself; connection records are used when present;
the model's numbers equal those of the NDJSON outputs; bad input is one line naming the file and place.
The page in a real browser: tests/test_report_browser.py."""
from __future__ import annotations

import re
from collections import Counter

import pytest

from conftest import PCAPS, ROOT, need, read_ndjson, run_cli
from ids.commands.report import read_ndjson as report_read
from ids.report.model import ReportModel, severity_name

CONN = ROOT / "tests" / "data" / "report-conn-demo.ndjson"
DEMO = ["pcaps/modbus-demo.pcap", "--rules", "rules/", "--lists", "pcaps/modbus-demo.lists.yml"]
SIM = ["pcaps/sim/changes.pcap", "--baseline", "models/sim-baseline.yaml"]
GENERATED = re.compile(r'<p class="gen" id="generated">[^<]*</p>')


def without_generated(html: str) -> str:
    assert len(GENERATED.findall(html)) == 1, "exactly one generation line"
    return GENERATED.sub("", html)


def analyze(tmp_path, name, args):
    alerts, events = tmp_path / f"{name}-alerts.ndjson", tmp_path / f"{name}-events.ndjson"
    run_cli("analyze", *args, "-o", str(alerts), "--events", str(events), "-q")
    return alerts, events


def model_from(alerts, *events) -> dict:
    m = ReportModel()
    for d in report_read(str(alerts)):
        m.add_alert(d)
    for path in events:
        for d in report_read(str(path)):
            m.add_event(d)
    return m.build()


@pytest.mark.parametrize("name,args", [("demo", DEMO), ("sim", SIM)])
def test_captures_and_ndjson_give_the_same_report(tmp_path, name, args):
    need(PCAPS / args[0].split("/", 1)[1])
    alerts, events = analyze(tmp_path, name, args)
    a, b, c = tmp_path / "a.html", tmp_path / "b.html", tmp_path / "c.html"
    run_cli("report", *args, "-o", str(a))
    run_cli("report", *args, "-o", str(b))
    run_cli("report", "--from", str(alerts), "--events", str(events), "-o", str(c))
    ha, hb, hc = (p.read_text(encoding="utf-8") for p in (a, b, c))
    assert without_generated(ha) == without_generated(hb)  # deterministic
    assert without_generated(ha) == without_generated(hc)  # the documents are the contract


def test_the_file_refers_to_nothing_outside_itself(tmp_path):
    out = tmp_path / "r.html"
    run_cli("report", *DEMO, "-o", str(out))
    html = out.read_text(encoding="utf-8")
    assert "default-src 'none'" in html  # the page's own policy forbids every fetch
    assert not re.search(r"<(link|iframe|object|embed)\b", html, re.I)
    assert not re.search(r"""<(script|img)[^>]*\ssrc=""", html, re.I)
    assert "sourceMappingURL" not in html and "@import" not in html and "@font-face" not in html
    hrefs = set(re.findall(r'href="([^"#][^"]*)"', html))
    assert hrefs and all(h.startswith("https://attack.mitre.org/techniques/") for h in hrefs), hrefs


def test_numbers_equal_the_ndjson_outputs(tmp_path):
    alerts, events = analyze(tmp_path, "sim", SIM)
    A, E = read_ndjson(alerts), read_ndjson(events)
    m = model_from(alerts, events)
    o = m["overview"]
    assert o["alerts"] == len(A) == 10 and o["events"] == len(E)
    assert o["alerts_by_severity"] == {**{k: 0 for k in ("critical", "high", "medium", "low", "info")},
                                       **Counter(severity_name(a["event"]["severity"]) for a in A)}
    ips = {d[s]["ip"] for d in E if d["event"]["dataset"] != "otids.flow" for s in ("source", "destination")}
    assert o["hosts"] == len(ips) == len(m["assets"]) == len(m["map"]["nodes"])
    assert o["start"] == min(d["@timestamp"] for d in E + A)[:19] + "Z"
    # with connection records in the events (the default), the protocol mix counts connections
    C = [d for d in E if d["event"]["dataset"] == "otids.conn"]
    assert C and o["protocols"] == dict(Counter(d["network"]["protocol"] for d in C
                                                 if d.get("network", {}).get("protocol")))
    assert {f["rule"]: f["alerts"] for f in m["findings"]} == dict(Counter(a["rule"]["id"] for a in A))
    assert len(m["baseline"]) == sum(1 for a in A if a["otids"]["alert"]["detector"] == "baseline") == 6
    # the simulator's OPC UA write and the Modbus writes are in the per-device activity
    nodes = {(n["name"], n["kind"]) for d in m["opcua"] for n in d["nodes"]}
    assert ("ns=2;s=Line1.Setpoint", "Write") in nodes
    assert any(b["function"] == "write_single_register" for d in m["modbus"] for b in d["blocks"])
    # alerting links are marked on the map
    alerting = {(e["source"], e["target"]) for e in m["map"]["edges"] if e["alerting"]}
    assert ("127.0.0.3", "127.0.0.12") in alerting


def test_connection_records_are_used_when_present(tmp_path):
    alerts, events = analyze(tmp_path, "demo", DEMO)
    protocol_only = tmp_path / "protocol-events.ndjson"  # an events file of before connection records
    protocol_only.write_text("".join(line for line in events.read_text().splitlines(keepends=True)
                                     if '"dataset":"otids.conn"' not in line))
    events = protocol_only
    without = model_from(alerts, events)
    with_conn = model_from(alerts, events, CONN)
    conns = read_ndjson(CONN)
    assert without["source"] == "events" and without["overview"]["packets"] is None
    assert without["overview"]["hosts"] == 4
    assert with_conn["source"] == "conn"
    o = with_conn["overview"]
    assert o["packets"] == sum(d["source"]["packets"] + d["destination"]["packets"] for d in conns)
    assert o["connections"] == len(conns) == 5
    assert o["hosts"] == 5  # the DNS server is seen only in a connection record
    assert o["protocols"] == {"modbus": 3, "dns": 1, "icmp": 1}
    assert set(with_conn["mix"]["series"]) == {"modbus", "dns", "icmp"}
    assert sum(sum(v) for v in with_conn["mix"]["series"].values()) == sum(
        d["source"]["bytes"] + d["destination"]["bytes"] for d in conns)
    edges = {(e["source"], e["target"], e["protocol"]) for e in with_conn["map"]["edges"]}
    assert ("127.0.0.20", "127.0.0.53", "dns") in edges and ("127.0.0.20", "127.0.0.3", "icmp") in edges
    # protocol facts still come from the protocol events
    plc = next(a for a in with_conn["assets"] if a["ip"] == "127.0.0.2")
    assert "modbus slave" in plc["roles"] and plc["identity"]


def test_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"@timestamp":"2026-01-01T00:00:00Z","event":{}}\nnot json\n')
    p = run_cli("report", "--from", str(bad), "-o", str(tmp_path / "x.html"), check_rc=2)
    assert p.stderr.startswith(f"otids: error: {bad}:2: not a JSON document") and p.stderr.count("\n") == 1
    assert not (tmp_path / "x.html").exists()
    p = run_cli("report", str(tmp_path / "missing.pcap"), "-o", str(tmp_path / "x.html"), check_rc=2)
    assert "missing.pcap: no such capture file" in p.stderr
    p = run_cli("report", "-o", str(tmp_path / "x.html"), check_rc=2)
    assert "give capture files, or --from" in p.stderr
    p = run_cli("report", *DEMO, "-o", str(tmp_path / "no" / "dir" / "x.html"), check_rc=2)
    assert "x.html: cannot write" in p.stderr
    p = run_cli("report", "--from", str(tmp_path / "nope.ndjson"), check_rc=2)
    assert "nope.ndjson: cannot read" in p.stderr


def test_certificates_and_their_verdicts(tmp_path):
    args = ["pcaps/auth-opcua-expired.pcap", "pcaps/auth-tls12-clientcerts.pcap", "--registry",
            "pcaps/auth-registry.yaml", "--trust-store", "pcaps/auth-pki"]
    alerts, events = analyze(tmp_path, "auth", args)
    m = model_from(alerts, events)
    certs = {c["subject"]: c for a in m["assets"] for c in a["certificates"]}
    assert certs["device-expired"]["verdict"] == ["expired"]
    assert certs["device-weakkey"]["verdict"] == ["weak_key"]
    assert any(c["verdict"] == ["no finding"] for c in certs.values())  # the servers' own certificates
    out = tmp_path / "auth.html"
    run_cli("report", *args, "-o", str(out))
    assert "device-expired" in out.read_text(encoding="utf-8")


def test_inputs_are_never_overwritten_and_documents_go_by_kind(tmp_path):
    alerts, events = analyze(tmp_path, "demo", DEMO)
    before = alerts.read_bytes()
    p = run_cli("report", "--from", str(alerts), "--events", str(events), "-o", str(alerts), check_rc=2)
    assert "is an input of this report" in p.stderr and alerts.read_bytes() == before
    # files swapped: each document still counts by its event.kind
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    run_cli("report", "--from", str(alerts), "--events", str(events), "-o", str(a))
    run_cli("report", "--from", str(events), "--events", str(alerts), "-o", str(b))
    ha, hb = (without_generated(p.read_text(encoding="utf-8")) for p in (a, b))
    assert ha == hb


def test_a_pipe_or_device_is_written_not_renamed_over(tmp_path):
    """`-o` naming a FIFO (or /dev/full, /dev/stdout) gets the HTML written into it; a rename over it once
    replaced the device node itself with a regular file (as root, /dev/full stopped being a device)."""
    import os
    import stat
    import threading
    alerts, events = analyze(tmp_path, "demo", DEMO)
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    run_cli("report", "--from", str(alerts), "--events", str(events), "-o", str(fifo))
    if reader.is_alive():  # the buggy rename never opened the FIFO: unblock the reader
        with open(fifo, "wb"):
            pass
    reader.join(10)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and got and got[0].startswith(b"<!DOCTYPE html")
