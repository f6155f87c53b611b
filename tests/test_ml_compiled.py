"""The ML detector's compiled modules (ids/detect/ml/features.py with features.pxd, the Modbus feature view)
give byte-identical results to the pure-Python sources they are compiled from: on the Modbus, MQTT and OPC UA
capture pairs of pcaps/ml, the trained model files, every window row of the test capture and the alerts of
`analyze --model`, once in a process forced pure (OTIDS_PURE=1) and once running compiled.

When the modules are not built this test fails and says how to build them, rather than compare pure with pure."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ids import _build  # noqa: E402
from conftest import finish_driver, start_driver  # noqa: E402

DRIVER = ROOT / "tests" / "ml_compiled_driver.py"
ML_MODULES = ("ids.detect.ml.features", "ids.protocols.modbus.ml")


def test_ml_modules_are_in_the_compiled_build():
    assert set(ML_MODULES) <= set(_build.COMPILED)


def test_compiled_ml_matches_pure():
    for proto in ("modbus", "mqtt", "opcua"):
        for part in ("train", "test"):
            p = ROOT / "pcaps" / "ml" / f"{proto}-{part}.pcap.gz"
            assert p.is_file(), f"{p} is missing (pcaps/ml/make_ml_captures.py makes it)"
    pure_p, comp_p = start_driver(DRIVER, True), start_driver(DRIVER, False)  # side by side: two cores, half the wait
    pure, comp = finish_driver(pure_p, "pure (OTIDS_PURE=1)"), finish_driver(comp_p, "compiled")
    assert all(s == f"pure ({_build.PURE_ENV}=1)" for s in pure["modules"].values()), pure["modules"]
    not_compiled = {m: s for m, s in comp["modules"].items() if s != "compiled"}
    assert not not_compiled, ("ML modules not running compiled, build them with `python3 setup.py build_ext "
                              f"--inplace`: {not_compiled}")
    for proto, outs in pure["captures"].items():
        assert outs["train_exit"] == "0" and outs["analyze_exit"] == "0" and int(outs["row_count"]) > 100, (proto, outs)
        assert any(k.startswith("model ") for k in outs)
    assert bytes.fromhex(pure["captures"]["modbus"]["alerts"]).count(b"otids.ml.") > 0  # alerts to compare
    differ = [(proto, kind) for proto, outs in pure["captures"].items() for kind, data in outs.items()
              if comp["captures"][proto].get(kind) != data]
    assert not differ, f"compiled ML output differs from pure Python: {differ}"
