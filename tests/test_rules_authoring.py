"""Issue #20 item 7: rule-authoring traps. The docs/RULES.md example passes its own tests, MQTT test cases get
the `mqtt.types` their rule is indexed by, and test captures are found relative to the rule file, so a copy
of rules/ elsewhere skips (and says so) instead of failing."""
from __future__ import annotations

import os
import re
import shutil

from conftest import ROOT, run_cli


def test_rules_md_example_passes_its_own_tests(tmp_path):
    text = (ROOT / "docs" / "RULES.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    (tmp_path / "rules").mkdir()
    os.symlink(ROOT / "pcaps", tmp_path / "pcaps")
    (tmp_path / "rules" / "site.yml").write_text(block)
    p = run_cli("rules", "test", str(tmp_path / "rules"), "-v")
    assert "3 passed, 0 failed" in p.stderr, p.stdout + p.stderr


def test_mqtt_case_without_types_is_a_publish(tmp_path):
    f = tmp_path / "m.yml"
    f.write_text("""rules:
  - id: t.mqtt.cmd
    title: Publish to a command topic
    description: d
    severity: low
    protocol: mqtt
    match: {mqtt.publish.topic: {topic: "plant/+/cmd/#"}}
    tests:
      - match: {source.ip: 10.0.0.1, mqtt.publish.topic: plant/l1/cmd/start}
      - no_match: {source.ip: 10.0.0.1, mqtt.publish.topic: plant/l1/temp}
""")
    p = run_cli("rules", "test", str(f))
    assert "2 passed, 0 failed" in p.stderr


def test_copied_rules_skip_missing_captures_and_say_so(tmp_path):
    dst = tmp_path / "etc" / "rules"
    shutil.copytree(ROOT / "rules", dst)
    p = run_cli("rules", "test", str(dst))  # exit 0: nothing failed
    skips = [ln for ln in p.stdout.splitlines() if ln.startswith("SKIP ")]
    assert len(skips) > 10 and all("no such capture beside the rule file" in s for s in skips)
    assert f", {len(skips)} skipped" in p.stderr and "0 failed" in p.stderr
    run_cli("rules", "test", str(dst), "--strict", check_rc=1)
    # the same files where they belong: every case runs, none skipped, from any working directory
    p = run_cli("rules", "test", str(ROOT / "rules"))
    assert "skipped" not in p.stderr and "SKIP" not in p.stdout
