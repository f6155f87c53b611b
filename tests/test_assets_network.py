"""`otids assets` lists every host seen, whatever it speaks (issue #21): every unicast address tshark sees in
the corpus S7comm, DNP3, BACnet, IEC 104, EtherNet/IP and FINS captures (ITI ICS-Security-Tools, CC-BY-4.0),
with the protocols identified and the roles the protocol packages declare; internet addresses are not given
the gateway's MAC; the summary shows protocol and service for every talker and how many hosts were seen."""
from __future__ import annotations

import ipaddress
import json
import subprocess

import pytest

from conftest import need, need_tool, run_cli

ITI = "collections/ITI-ICS-Security-Tools/pcaps/"
CAPTURES = ["ModbusTCP/mb2.pcap", "dnp3/cold_restart_and_response.pcap", "dnp3/directoperate_and_response.pcap",
            "dnp3/file_read.pcap", "BACnet/bacnet_test.pcap", "IEC60870-5-104/090813_diverse.pcap",
            "EthernetIP/enip_test.pcap", "EthernetIP/cip_start_plc.pcap", "EthernetIP/cip_stop_plc.pcap",
            "EthernetIP/cip-multiple-1.pcap", "omron/omron_test.pcap"]


def tshark_hosts(path) -> set[str]:
    out = subprocess.run([need_tool("tshark"), "-n", "-r", str(path), "-T", "fields", "-e", "ip.src", "-e", "ip.dst",
                          "-e", "arp.src.proto_ipv4"], capture_output=True, text=True, check=True).stdout
    hosts = set()
    for tok in out.split():
        for ip in tok.split(","):
            a = ipaddress.ip_address(ip)
            if not (a.is_multicast or a.is_unspecified or ip.endswith(".255")):
                hosts.add(ip)
    return hosts


def assets(path, tmp_path) -> list[dict]:
    out = tmp_path / "assets.json"
    run_cli("assets", str(path), "--json", "-o", str(out))
    return json.loads(out.read_text())


@pytest.mark.parametrize("rel", CAPTURES)
def test_every_host_is_an_asset(rel, corpus):
    from ids.commands.assets import run_inventory
    from ids.config import Config
    path = need(corpus / ITI / rel)
    want = tshark_hosts(path)
    got = {a["ip"] for a in run_inventory([str(path)], Config())[0].records()}  # what `otids assets` lists
    assert want and want <= got, f"missing {sorted(want - got)}"


def test_roles_and_protocols_come_from_the_packages(corpus, tmp_path):
    recs = {a["ip"]: a for a in assets(need(corpus / ITI / "ModbusTCP/mb2.pcap"), tmp_path)}
    plcs = [a for a in recs.values() if "s7comm" in a["protocols"] and "plc" in a["roles"]]
    assert plcs and all("s7comm/tcp/102" in a["services"] for a in plcs)  # s7comm server = PLC
    dnp = {a["ip"]: a for a in assets(need(corpus / ITI / "dnp3/cold_restart_and_response.pcap"), tmp_path)}
    assert dnp["192.168.60.130"]["roles"] == ["outstation"] and dnp["192.168.60.1"]["roles"] == ["dnp3_master"]


def test_internet_hosts_do_not_get_the_gateway_mac(corpus, tmp_path):
    recs = {a["ip"]: a for a in assets(need(corpus / ITI / "hart/hart_ip.pcap"), tmp_path)}
    internet = [a for a in recs.values() if ipaddress.ip_address(a["ip"]).is_global]
    assert len(internet) > 20 and all(a["macs"] == [] for a in internet)
    assert recs["192.168.0.10"]["macs"][0]["vendor"].startswith("Rosemount")  # the HART-IP device keeps its own


def test_summary_talkers_show_protocol_and_service_and_hosts(corpus, tmp_path):
    p = run_cli("analyze", str(need(corpus / ITI / "hart/hart_ip.pcap")), "-o", str(tmp_path / "a.ndjson"))
    err = p.stderr
    assert "hosts seen: " in err and "service" in err
    assert "hart_ip" in err and ("udp/5094" in err or "tcp/5094" in err)
