"""deploy/: the sample configuration loads and documents every elasticsearch key; the commands that the
docker-compose services and systemd units run are valid otids command lines; systemd accepts the units.
(Running the compose stack needs Docker with the compose plugin and network access to pull images: not
done here; docs/ELASTICSEARCH.md says so.)"""
from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess

import yaml
from conftest import ROOT, need_tool

from ids.cli import build_parser
from ids.config import ElasticsearchConfig, load_config

DEPLOY = ROOT / "deploy"


def parse_otids(argv: list[str]):
    return build_parser().parse_args(argv)


def test_sample_config_loads_and_lists_every_key():
    cfg = load_config(str(DEPLOY / "otids.yaml"))
    assert cfg.elasticsearch.url == "https://es01:9200" and cfg.elasticsearch.setup is False
    text = (DEPLOY / "otids.yaml").read_text()
    keys = set(re.findall(r"^  ([a-z_]+):", text, re.M))
    assert {f.name for f in dataclasses.fields(ElasticsearchConfig)} <= keys


def test_compose_services_run_valid_commands():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    svc = compose["services"]
    assert set(svc) == {"setup", "es01", "kibana", "otids-setup", "sensor", "sensor-live"}
    es = dict(e.split("=", 1) for e in svc["es01"]["environment"])
    assert es["xpack.security.enabled"] == "true" and es["xpack.security.http.ssl.enabled"] == "true"
    # otids es setup as the superuser, then the sensor with its own key
    a = parse_otids(svc["otids-setup"]["command"])
    assert (a.command, a.es_command, a.es, a.kibana, a.wait) == ("es", "setup", "https://es01:9200",
                                                                 "http://kibana:5601", 300)
    line = svc["sensor"]["command"][0]
    argv = shlex.split(line)
    assert argv[:2] == ["exec", "otids"]
    a = parse_otids([x.replace("/pcaps/*.pcap*", "/pcaps/a.pcap") for x in argv[2:]])
    assert a.command == "analyze" and a.es == "https://es01:9200" and a.es_events
    assert "OTIDS_ES_API_KEY_FILE=/run/secrets/otids-api-key" in svc["sensor"]["environment"]
    assert svc["sensor-live"]["profiles"] == ["live"] and svc["sensor-live"]["command"][0] == "live"  # issue #10
    # every variable the file uses is in the example .env (or has a default)
    env = dict(line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines()
               if line and not line.startswith("#"))
    used = set(re.findall(r"\$\{([A-Z_]+)(?::-[^}]*)?\}", (DEPLOY / "docker-compose.yml").read_text()))
    assert used <= set(env)
    assert (DEPLOY / "compose" / "stack-setup.sh").stat().st_mode & 0o111


def test_systemd_units_are_valid(tmp_path):
    exe = need_tool("systemd-analyze")
    for unit, instance in (("otids@.service", "otids@eth0.service"), ("otids-es-setup.service", None)):
        text = (DEPLOY / "systemd" / unit).read_text()
        start = re.search(r"^ExecStart=(\S+) (.*)$", text, re.M)
        argv = start.group(2).replace("%i", "eth0").split()
        if argv[0] == "live":
            assert argv[:2] == ["live", "-i"]  # `otids live` arrives with issue #10
        else:
            a = parse_otids(argv)
            assert (a.command, a.es_command, a.config) == ("es", "setup", "/etc/otids/otids.yaml")
        # systemd itself checks every directive; the binary path is swapped for one that exists here
        target = tmp_path / (instance or unit)
        (tmp_path / unit).write_text(text.replace(start.group(1), "/bin/true"))
        p = subprocess.run([exe, "verify", str(target)], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stderr.strip() == "", p.stderr
