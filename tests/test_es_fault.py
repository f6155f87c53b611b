"""Fault injection for the Elasticsearch output, against real osmem-server processes: the server is killed
(or frozen) half-way through a capture while analysis goes on, then comes back; every alert must end up in
the cluster exactly once, and a document with a mapping conflict in the dead-letter file.

The faults are driven from inside the analysis: a sink placed before the others sees each alert first and
stops / restarts the server at fixed alert numbers, so the outage always falls in the middle of the run."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from conftest import PCAPS, read_ndjson
from es_helpers import Osmem, es_config, file_view

from ids.config import Config
from ids.detect.anomaly import AnomalyDetector
from ids.events import Alert
from ids.output.elasticsearch import AlertSink, Shipper
from ids.output.ndjson import NdjsonSink
from ids.pipeline import Run

STORM = PCAPS / "modbus-alert-storm.pcap"
EXPECTED = 109 + 1  # the capture's anomaly alerts, plus the poisoned one


class Poison:
    """A buggy detector: one alert whose otids.alert.count is a string (the mapping says long)."""

    def __init__(self):
        self.fired = False

    def on_event(self, ev):
        if not self.fired and ev.dataset == "otids.modbus" and ev.flow.client_ip == "10.10.0.45":
            self.fired = True
            return [Alert(ts=ev.ts, rule_id="test.poison", rule_name="Poisoned alert", description="test",
                          severity="low", reason="mapping conflict on purpose", source="test", event=ev,
                          extra={"count": "many"})]
        return None

    def flush(self, ts):
        return []


class Faults:
    """An alert sink that runs `actions[n]` when it sees the n-th alert (before the other sinks do)."""

    def __init__(self, actions: dict):
        self.actions = actions
        self.n = 0
        self.count = 0
        self.path = "<faults>"

    def write_alert(self, a) -> None:
        self.n += 1
        if self.n in self.actions:
            self.actions[self.n]()

    def close(self) -> None:
        pass


def wait_until(cond, timeout=15.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def run_with_faults(tmp_path: Path, shipper: Shipper, actions: dict) -> list[dict]:
    nd = NdjsonSink(str(tmp_path / "alerts.ndjson"), "alerts")
    sinks = [Faults(actions), nd, AlertSink(shipper, "default")]
    run = Run(Config(), [AnomalyDetector(Config().anomaly), Poison()], sinks, [])
    assert run.analyze_file(str(STORM))
    run.finish()
    for s in sinks:
        s.close()
    alerts = read_ndjson(tmp_path / "alerts.ndjson")
    assert len(alerts) == EXPECTED
    return alerts


def report(name: str, counters: dict, **extra) -> None:
    print(f"\n[{name}] " + json.dumps({**counters, **extra}))


def test_server_killed_and_restarted_mid_run(tmp_path):
    srv = Osmem(tmp_path).start()
    cfg = es_config(tmp_path, batch_size=10, queue_size=20, retries=1, flush_interval_ms=20)
    sh = Shipper(srv.url, cfg)
    before: dict = {}

    def kill():
        assert sh.flush(15)  # what went out so far is in the cluster (snapshot it: the process dies with it)
        before.update({h["_id"]: file_view(h["_source"]) for h in srv.docs("logs-otids.alert-*")})
        srv.stop()

    def noticed():  # analysis went on; make sure the outage was seen before the server returns
        wait_until(lambda: not sh.connected and sh.counters()["spooled"] > 0, what="the outage to be noticed")

    try:
        alerts = run_with_faults(tmp_path, sh, {40: kill, 60: noticed, 85: srv.start})
        after = {h["_id"]: file_view(h["_source"]) for h in srv.docs("logs-otids.alert-*")}
    finally:
        srv.stop()
    c = sh.counters()
    poison = [a for a in alerts if a["rule"]["id"] == "test.poison"]
    good = {a["event"]["id"]: a for a in alerts if a["rule"]["id"] != "test.poison"}
    # exactly once across the two lives of the server: what the first had, plus what the second got
    assert set(before) & set(after) == set()
    assert {**before, **after} == good
    assert len(before) == 39 and len(after) == 70
    assert (c["sent"], c["duplicates"], c["rejected"], c["dropped"]) == (109, 0, 1, 0)
    assert c["spooled"] > 0 and c["retried"] > 0 and c["replayed"] == c["spooled"]
    assert sum(sh.spool.pending().values()) == 0
    dead = read_ndjson(Path(cfg.dead_letter))
    assert [d["_id"] for d in dead] == [poison[0]["event"]["id"]]
    assert dead[0]["error"]["type"] == "mapper_parsing_exception" and "otids.alert.count" in dead[0]["error"]["reason"]
    report("kill+restart", c, in_first_server=len(before), in_second_server=len(after), dead_letter=len(dead))


def test_server_frozen_mid_run_requests_time_out_and_replay_deduplicates(tmp_path):
    """SIGSTOP: the server keeps accepting connections but answers nothing, so bulk requests time out --
    and are executed late, after SIGCONT. The replay of those documents comes back 409: counted as
    duplicates, stored once."""
    srv = Osmem(tmp_path).start()
    cfg = es_config(tmp_path, batch_size=10, queue_size=20, retries=1, timeout=1, flush_interval_ms=20)
    sh = Shipper(srv.url, cfg)
    frozen = []

    def freeze():  # while the shipper is connected and shipping: the batches in flight hang
        wait_until(lambda: sh.connected and sh.counters()["sent"] > 0, what="the first deliveries")
        os.kill(srv.proc.pid, signal.SIGSTOP)
        frozen.append(True)

    def noticed():
        wait_until(lambda: not sh.connected and sh.counters()["spooled"] > 0, what="the freeze to be noticed")

    def thaw():
        os.kill(srv.proc.pid, signal.SIGCONT)
        frozen.clear()

    try:
        alerts = run_with_faults(tmp_path, sh, {40: freeze, 60: noticed, 85: thaw})
        stored = srv.docs("logs-otids.alert-*")
    finally:
        if frozen:
            os.kill(srv.proc.pid, signal.SIGCONT)
        srv.stop()
    c = sh.counters()
    good = {a["event"]["id"]: a for a in alerts if a["rule"]["id"] != "test.poison"}
    assert len(stored) == 109 and {h["_id"]: file_view(h["_source"]) for h in stored} == good
    assert c["sent"] + c["duplicates"] == 109 and c["rejected"] == 1 and c["dropped"] == 0
    assert c["retried"] > 0 and c["spooled"] > 0
    # requests that timed out were executed after SIGCONT; their replay found the documents there
    assert c["duplicates"] > 0
    assert sum(sh.spool.pending().values()) == 0
    report("freeze+thaw", c, stored=len(stored))
