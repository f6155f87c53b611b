"""SIGHUP reload hooks (`otids live`): rules, baseline and registry are re-read; a broken file raises
UserError and the running version stays (the sensor reports the error and goes on)."""
from __future__ import annotations

import argparse
import shutil

import pytest

from conftest import PCAPS, ROOT
from ids.config import Config
from ids.errors import UserError


def _args(**kw):
    ns = argparse.Namespace(rules=None, lists=None, rules_reload=0, baseline=None, baseline_learn=None,
                            registry=None, trust_store=None, no_auth=False)
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


def test_rules_reload_good_then_broken(tmp_path):
    from ids.commands.rules import build
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    shutil.copy(PCAPS / "modbus-demo.lists.yml", rules / "lists.yml")
    (det,), _, _ = build(_args(rules=[str(rules)]), Config())
    n = len(det.c.rules)
    (rules / "mqtt.yml").unlink()
    det.reload(Config())
    assert 0 < len(det.c.rules) < n
    m = len(det.c.rules)
    (rules / "modbus.yml").write_text("rules:\n  - id: broken\n    severity: nope\n")
    with pytest.raises(UserError, match=f"keeping the {m} running rules"):
        det.reload(Config())
    assert len(det.c.rules) == m


def test_baseline_reload_good_then_broken(tmp_path):
    from ids.commands.baseline import build
    f = tmp_path / "b.yaml"
    shutil.copy(ROOT / "models" / "sim-baseline.yaml", f)
    (det,), _, _ = build(_args(baseline=str(f)), Config())
    talkers = dict(det.talkers)
    det.reload(Config())
    assert det.talkers == talkers
    f.write_text("this: [is not a baseline\n")
    with pytest.raises(UserError):
        det.reload(Config())
    assert det.talkers == talkers  # the running baseline stays


def test_registry_reload_good_then_broken(tmp_path):
    from ids.commands.auth import build
    reg = tmp_path / "reg.yaml"
    shutil.copy(ROOT / "deploy" / "registry.example.yaml", reg)
    text = reg.read_text().replace("trust_store: /etc/otids/trust", "")
    reg.write_text(text)
    (det,), _, _ = build(_args(registry=str(reg)), Config())
    assert det.registry.device_at("10.10.2.1").name == "plc-line3"
    reg.write_text(text.replace("name: plc-line3", "name: plc-line4"))
    det.reload(Config())
    assert det.registry.device_at("10.10.2.1").name == "plc-line4"
    reg.write_text("devices:\n  - name: a\n    ips: [not-an-ip]\n")
    with pytest.raises(UserError, match="reg.yaml:3:5"):
        det.reload(Config())
    assert det.registry.device_at("10.10.2.1").name == "plc-line4"
