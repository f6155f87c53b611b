"""Run by tests/test_ml_compiled.py in a subprocess, once with OTIDS_PURE=1 and once without: for each labelled
ML capture pair in pcaps/ml (Modbus, MQTT, OPC UA), `otids train` on the training capture, every window row
of the test capture (all 45 features at full precision), and `otids analyze --model` on it. Prints one JSON
object: how the ML modules ran, and per protocol the model files, rows and alerts (hex or digest)."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["SOURCE_DATE_EPOCH"] = "1741000000"  # reproducible model files

from ids import _build  # noqa: E402
from ids.cli import main  # noqa: E402
from ids.config import Config  # noqa: E402
from ids.detect.ml.evaluate import extract_rows  # noqa: E402
from ids.detect.ml.store import load  # noqa: E402

ML_MODULES = ("ids.detect.ml.features", "ids.protocols.modbus.ml")


def _run(argv: list[str]) -> int:
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        return main(argv)


def outputs(proto: str) -> dict[str, str]:
    train, test = ROOT / "pcaps" / "ml" / f"{proto}-train.pcap.gz", ROOT / "pcaps" / "ml" / f"{proto}-test.pcap.gz"
    with tempfile.TemporaryDirectory() as td:
        m, a = os.path.join(td, "model"), os.path.join(td, "a.ndjson")
        res = {"train_exit": str(_run(["train", str(train), "-o", m, "-q"]))}
        for name in sorted(os.listdir(m)):
            res["model " + name] = hashlib.sha256(Path(m, name).read_bytes()).hexdigest()
        sc = extract_rows([str(test)], Config(), load(m))
        res["rows"] = hashlib.sha256(repr([(tuple(x[:5]), r) for x, r in zip(sc.metas, sc.X.tolist())]).encode()).hexdigest()
        res["row_count"] = str(len(sc.metas))
        res["analyze_exit"] = str(_run(["analyze", str(test), "-q", "--model", m, "-o", a]))
        res["alerts"] = Path(a).read_bytes().hex()
    return res


if __name__ == "__main__":
    os.chdir(ROOT)
    status = dict(_build.status())
    out = {"modules": {k: status[k] for k in ML_MODULES}, "captures": {p: outputs(p) for p in ("modbus", "mqtt", "opcua")}}
    json.dump(out, sys.stdout)
