"""The ML detector with `--workers N`: when it is the parent's only reader of a record type, each worker sends
the record's feature view instead of the record (ids/parallel/offload.py, docs/ML.md "Throughput"), and the
alerts are byte-identical to one process for every worker count, on the three labelled protocols of pcaps/ml."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PCAPS, ROOT, need, run_cli
from ids.config import Config
from ids.detect.anomaly import AnomalyDetector
from ids.detect.engine import Engine
from ids.detect.ml.detector import MlDetector
from ids.detect.ml.store import load
from ids.pipeline import analyze
from ids.parallel.offload import offloaded, parent_views
from ids.parallel.shard import Emitter
from ids.protocols.modbus.messages import ModbusTransaction
from ids.protocols.modbus.ml import modbus_view

ML = PCAPS / "ml"
PROTOCOLS = ("modbus", "opcua", "mqtt")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    out, procs = {}, {}
    for proto in PROTOCOLS:  # the three trainings side by side (CI has two cores)
        d = out[proto] = tmp_path_factory.mktemp("mlw") / proto
        procs[proto] = subprocess.Popen([sys.executable, "-m", "ids.cli", "train",
                                         str(need(ML / f"{proto}-train.pcap.gz")), "-o", str(d), "-q"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    for proto, p in procs.items():
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"{proto}: {err}"
    return out


def _plan(model: Path, send_all: bool) -> tuple:
    cfg = Config()
    ml = MlDetector(load(str(model)), cfg.ml)
    engine = Engine([AnomalyDetector(cfg.anomaly), ml], [], [])
    det, types = offloaded(engine)
    assert det is not None and ModbusTransaction in types
    em = Emitter()
    em.offload(engine, det, types, send_all)
    assert parent_views(engine) == ml.on_view
    return em._plan(ModbusTransaction)


def test_a_worker_sends_the_view_when_ml_is_the_only_reader(models):
    check, send, count, view = _plan(models["modbus"], send_all=False)
    assert check is not None and not send and count
    _, col = analyze([str(need(ML / "modbus-test.pcap.gz"))], Config(), detectors=[])
    ev = next(e for e in col.events if type(e) is ModbusTransaction)
    v = view(ev)
    assert type(v) is tuple and v == tuple(modbus_view(ev))  # a plain tuple crosses (offload.parent_views)
    # with an event sink the record itself must cross (it is written there): no view
    check, send, count, view = _plan(models["modbus"], send_all=True)
    assert send and view is None


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_ml_alerts_identical_for_any_worker_count(proto, models, tmp_path):
    """Alerts only (no event sink), so that the views cross instead of the records."""
    test = need(ML / f"{proto}-test.pcap.gz")
    outs = []
    for n in ("1", "2", "3"):
        a = tmp_path / f"a{n}.ndjson"
        run_cli("analyze", str(test), "--model", str(models[proto]), "--workers", n, "-o", str(a), "-q")
        outs.append(a.read_bytes())
    assert outs[0].count(b"otids.ml.anomalous_window") >= 3, f"{proto}: too few ML alerts to compare"
    assert outs[1] == outs[0], f"{proto}: alerts differ between 1 and 2 workers"
    assert outs[2] == outs[0], f"{proto}: alerts differ between 1 and 3 workers"
