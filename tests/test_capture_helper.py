"""pcaps/tcpdump_lo.py, the one tcpdump helper of the capture generators (make_modbus_demo, make_mqtt_captures,
make_sparkplug_captures and make_pubsub_captures through it): armed before the traffic, every packet kept."""
from __future__ import annotations

import os
import socket
import sys

import pytest

from conftest import PCAPS, need_tool

sys.path.insert(0, str(PCAPS))
from tcpdump_lo import start_tcpdump, stop_tcpdump  # noqa: E402

from ids.capture.pcapfile import open_capture  # noqa: E402


def test_helper_records_every_datagram_sent_after_it_returns(tmp_path):
    need_tool("tcpdump")
    if os.geteuid() != 0:
        pytest.fail("tcpdump on lo needs root (CI runs as root)")
    out = tmp_path / "lo.pcap"
    proc = start_tcpdump(out, "udp and host 127.0.0.77 and port 40977")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(3):
            s.sendto(b"otids %d" % i, ("127.0.0.77", 40977))
    stop_tcpdump(proc)
    with open_capture(str(out)) as r:
        payloads = [bytes(data[-7:]) for _ts, _link, data in r.packets()]
    assert payloads == [b"otids 0", b"otids 1", b"otids 2"]


def test_generators_have_no_tcpdump_of_their_own():
    """The copies in the generators were the same forty lines with a different filter."""
    for name in ("make_modbus_demo.py", "make_mqtt_captures.py", "make_sparkplug_captures.py"):
        text = (PCAPS / name).read_text()
        assert "from tcpdump_lo import start_tcpdump, stop_tcpdump" in text and '"tcpdump", "-i"' not in text, name


def test_mosquitto_helper_starts_listening_and_stops(tmp_path):
    """pcaps/mosquitto_lo.py, the generators' one mosquitto helper: returns once the broker listens, and a
    broker that cannot start is an error naming why (not a generator waiting forever)."""
    need_tool("mosquitto")
    from mosquitto_lo import start_mosquitto, stop_mosquitto

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = start_mosquitto(conf, "127.0.0.1", [port])
    socket.create_connection(("127.0.0.1", port), timeout=1).close()
    stop_mosquitto(proc)
    assert proc.returncode is not None
    conf.write_text("no_such_option 1\n")
    with pytest.raises(RuntimeError, match="mosquitto exited"):
        start_mosquitto(conf, "127.0.0.1", [port], timeout=5)
