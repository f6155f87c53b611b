#!/usr/bin/env python3
"""Record the MQTT test captures from real traffic: Debian's mosquitto broker and paho-mqtt clients on
loopback, captured with tcpdump. Nothing is crafted: handshakes, segmentation (mosquitto packing several
PUBLISHes into one segment), timing and teardowns are what the real peers did.

Writes (classic pcap):

* ``mqtt-mosquitto.pcap`` - plain MQTT, broker 127.0.0.5:1883 with a password file, plus a second
  anonymous listener on 127.0.0.5:11883 (content probing, no port mapping):
    - subscriber ``plant-sub`` (3.1.1, user ``operator``): wildcard filters ``plant/+/temp`` (QoS 1) and
      ``plant/#`` (QoS 2); receives everything below;
    - publisher ``sensor-01`` (3.1.1, user ``sensor``) with a will (``plant/sensor-01/status``,
      ``offline``, QoS 1, retained): QoS 0, 1 and 2 publishes, a retained one, a burst of 40 QoS 0
      publishes, then it dies without DISCONNECT so the broker sends the will;
    - ``sensor-02`` (5.0, user ``sensor``): properties on CONNECT (session expiry, user property), a
      subscription with no_local, publishes with topic alias (second one alias-only), message expiry,
      content type, user property, QoS 1 and 2, UNSUBSCRIBE, DISCONNECT with reason 0x04 (send will);
    - ``intruder`` (3.1.1 and 5.0): wrong password, refused (return code 5 / reason 0x86);
    - ``probe-client`` (3.1.1, anonymous) on port 11883: CONNECT, PUBLISH QoS 1, DISCONNECT.
* ``mqtt-tls.pcap`` - MQTT over TLS with client certificates (CA, broker and device certificates made
  here with ``cryptography``): a TLS 1.2 listener on 127.0.0.5:8883 and a TLS 1.3 listener on
  127.0.0.5:8884 (not a mapped port: found by the TLS probe), both ``require_certificate true``;
  device ``device-01`` connects and publishes on both; on 8883 a client without certificate is refused.

The CA, broker and device certificates are written next to the captures as ``mqtt-tls-certs/*.pem``
(public parts only) so tests can compare decoded fields with the real certificates.

Usage (root, needs tcpdump and mosquitto)::

    python3 pcaps/make_mqtt_captures.py [OUTDIR]   # default: pcaps/
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when a test loads this file by path
from mosquitto_lo import start_mosquitto, stop_mosquitto  # noqa: E402  the generators' one mosquitto helper
from tcpdump_lo import start_tcpdump, stop_tcpdump  # noqa: E402  the generators' one tcpdump helper

HOST = "127.0.0.5"
PLAIN, PROBE_PORT, TLS12, TLS13 = 1883, 11883, 8883, 8884
OUT = Path(__file__).resolve().parent


def die(msg: str) -> None:
    print(f"make_mqtt_captures: error: {msg}", file=sys.stderr)
    sys.exit(1)


# ------------------------------------------------------------------ mosquitto (tcpdump: tcpdump_lo.py)
def _bpf(ports: list[int]) -> str:
    return f"host {HOST} and (" + " or ".join(f"tcp port {p}" for p in ports) + ")"


def start_broker(conf: Path, ports: list[int]) -> subprocess.Popen:
    try:
        return start_mosquitto(conf, HOST, ports)
    except RuntimeError as e:
        die(str(e))
        raise


# ------------------------------------------------------------------ certificates
def make_pki(d: Path) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

    def name(cn: str, ou: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "otids demo plant"),
                          x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = name("otids demo CA", "PKI")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, ou: str, key, san: list, usage) -> x509.Certificate:
        return (x509.CertificateBuilder().subject_name(name(cn, ou)).issuer_name(ca_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(ca_key, hashes.SHA256()))

    import ipaddress
    broker_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    broker = leaf("broker.otids.test", "SCADA", broker_key,
                  [x509.DNSName("broker.otids.test"), x509.IPAddress(ipaddress.ip_address(HOST))],
                  ExtendedKeyUsageOID.SERVER_AUTH)
    dev_key = ec.generate_private_key(ec.SECP256R1())
    device = leaf("device-01", "field devices", dev_key, [x509.DNSName("device-01.otids.test")],
                  ExtendedKeyUsageOID.CLIENT_AUTH)

    def pem_key(k) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    files = {"ca": d / "ca.pem", "broker": d / "broker.pem", "broker_key": d / "broker.key",
             "device": d / "device-01.pem", "device_key": d / "device-01.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["broker"].write_bytes(broker.public_bytes(serialization.Encoding.PEM))
    files["broker_key"].write_bytes(pem_key(broker_key))
    files["device"].write_bytes(device.public_bytes(serialization.Encoding.PEM))
    files["device_key"].write_bytes(pem_key(dev_key))
    for k in ("broker_key", "device_key"):
        os.chmod(files[k], 0o644)  # mosquitto drops to user mosquitto
    return files


# ------------------------------------------------------------------ clients
def client(cid: str, v5: bool = False, user: str | None = None, pw: str | None = None):
    import paho.mqtt.client as mqtt
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid,
                    protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
    if user:
        c.username_pw_set(user, pw)
    return c


def wait_connected(c, port: int, props=None, clean=True) -> int:
    import paho.mqtt.client as mqtt
    result = {}

    def on_connect(cl, ud, flags, rc, properties=None):
        result["rc"] = rc.value if hasattr(rc, "value") else rc

    c.on_connect = on_connect
    if c._protocol == mqtt.MQTTv5:
        c.connect(HOST, port, keepalive=30, clean_start=clean, properties=props)
    else:
        c.connect(HOST, port, keepalive=30)
    c.loop_start()
    deadline = time.monotonic() + 5
    while "rc" not in result and time.monotonic() < deadline:
        time.sleep(0.02)
    return result.get("rc", -1)


def done(c, *infos) -> None:
    for info in infos:
        info.wait_for_publish(5)


def plain_traffic() -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    sub = client("plant-sub", user="operator", pw="op-secret")
    got = []
    sub.on_message = lambda c, u, m: got.append(m.topic)
    assert wait_connected(sub, PLAIN) == 0, "subscriber refused"
    sub.subscribe([("plant/+/temp", 1), ("plant/#", 2)])
    time.sleep(0.3)

    pub = client("sensor-01", user="sensor", pw="s3nsor")
    pub.will_set("plant/sensor-01/status", b"offline", qos=1, retain=True)
    assert wait_connected(pub, PLAIN) == 0, "publisher refused"
    done(pub, pub.publish("plant/line1/temp", b"21.5", qos=0),
         pub.publish("plant/line1/temp", b"21.7", qos=1),
         pub.publish("plant/line1/pressure", b"1.013", qos=2),
         pub.publish("plant/sensor-01/status", b"online", qos=1, retain=True))
    time.sleep(0.2)
    infos = [pub.publish("plant/line2/temp", f"{20 + i / 10:.1f}".encode(), qos=0) for i in range(40)]
    done(pub, *infos)
    time.sleep(0.5)
    # Die without DISCONNECT: the broker publishes the will.
    pub.loop_stop()
    pub._sock.close()
    time.sleep(1.0)

    v5 = client("sensor-02", v5=True, user="sensor", pw="s3nsor")
    cp = Properties(PacketTypes.CONNECT)
    cp.SessionExpiryInterval = 120
    cp.UserProperty = ("site", "hamburg")
    v5.will_set("plant/sensor-02/status", b"gone", qos=0, retain=False)
    assert wait_connected(v5, PLAIN, cp) == 0, "v5 client refused"
    from paho.mqtt.subscribeoptions import SubscribeOptions
    v5.subscribe([("plant/sensor-02/cmd", SubscribeOptions(qos=1, noLocal=True))])
    time.sleep(0.2)
    pp = Properties(PacketTypes.PUBLISH)
    pp.TopicAlias = 3
    pp.MessageExpiryInterval = 30
    pp.ContentType = "text/plain"
    pp.UserProperty = ("unit", "celsius")
    i1 = v5.publish("plant/line3/temp", b"19.9", qos=1, properties=pp)
    i1.wait_for_publish(5)
    pa = Properties(PacketTypes.PUBLISH)
    pa.TopicAlias = 3
    i2 = v5.publish("", b"20.1", qos=2, properties=pa)  # alias only: the broker resolves it
    i2.wait_for_publish(5)
    time.sleep(0.2)
    v5.unsubscribe("plant/sensor-02/cmd")
    time.sleep(0.2)
    dp = Properties(PacketTypes.DISCONNECT)
    dp.SessionExpiryInterval = 0
    v5.disconnect(reasoncode=mqtt.ReasonCode(PacketTypes.DISCONNECT, identifier=4), properties=dp)
    time.sleep(0.3)
    v5.loop_stop()

    for v in (False, True):
        bad = client("intruder", v5=v, user="sensor", pw="guess")
        rc = wait_connected(bad, PLAIN)
        assert rc != 0, "wrong password accepted"
        bad.loop_stop()
        bad.disconnect()
        time.sleep(0.2)

    pr = client("probe-client")
    assert wait_connected(pr, PROBE_PORT) == 0, "anonymous listener refused"
    done(pr, pr.publish("lab/probe", b"hello on 11883", qos=1))
    pr.disconnect()
    pr.loop_stop()

    time.sleep(0.5)
    sub.disconnect()
    sub.loop_stop()
    if "plant/sensor-01/status" not in got:
        die("the will was not delivered")


def tls_traffic(pki: dict[str, Path]) -> None:
    for port, version in ((TLS12, ssl.TLSVersion.TLSv1_2), (TLS13, ssl.TLSVersion.TLSv1_3)):
        ctx = ssl.create_default_context(cafile=str(pki["ca"]))
        ctx.minimum_version = ctx.maximum_version = version
        ctx.check_hostname = False
        ctx.load_cert_chain(str(pki["device"]), str(pki["device_key"]))
        c = client("device-01")
        c.tls_set_context(ctx)
        assert wait_connected(c, port) == 0, f"TLS client refused on {port}"
        done(c, c.publish("plant/device-01/temp", b"22.0", qos=1))
        c.disconnect()
        c.loop_stop()
        time.sleep(0.3)
    # No client certificate on the TLS 1.2 listener: the broker ends the handshake with an alert.
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    s = socket.create_connection((HOST, TLS12))
    try:
        ctx.wrap_socket(s, server_hostname="broker.otids.test").close()
        die("a client without certificate was accepted")
    except (ssl.SSLError, OSError) as e:
        print(f"client without certificate refused as expected: {e}")
    s.close()
    time.sleep(0.3)


# ------------------------------------------------------------------ main
def main() -> None:
    if os.geteuid() != 0:
        die("run as root (tcpdump)")
    for tool in ("tcpdump", "mosquitto", "mosquitto_passwd"):
        if shutil.which(tool) is None:
            die(f"{tool} not found")
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="otids-mqtt-") as tmp:
        d = Path(tmp)
        os.chmod(d, 0o755)
        pwfile = d / "passwd"
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "operator", "op-secret"], check=True)
        subprocess.run(["mosquitto_passwd", "-b", str(pwfile), "sensor", "s3nsor"], check=True)
        os.chmod(pwfile, 0o644)
        pki = make_pki(d)
        conf = d / "mosquitto.conf"
        conf.write_text(f"""per_listener_settings true
persistence false
log_dest stderr
listener {PLAIN} {HOST}
allow_anonymous false
password_file {pwfile}
listener {PROBE_PORT} {HOST}
allow_anonymous true
listener {TLS12} {HOST}
cafile {pki['ca']}
certfile {pki['broker']}
keyfile {pki['broker_key']}
require_certificate true
use_identity_as_username true
tls_version tlsv1.2
listener {TLS13} {HOST}
cafile {pki['ca']}
certfile {pki['broker']}
keyfile {pki['broker_key']}
require_certificate true
use_identity_as_username true
tls_version tlsv1.3
""")
        broker = start_broker(conf, [PLAIN, PROBE_PORT, TLS12, TLS13])
        try:
            time.sleep(0.3)
            dump = start_tcpdump(out / "mqtt-mosquitto.pcap", _bpf([PLAIN, PROBE_PORT]))
            try:
                plain_traffic()
            finally:
                stop_tcpdump(dump)
            dump = start_tcpdump(out / "mqtt-tls.pcap", _bpf([TLS12, TLS13]))
            try:
                tls_traffic(pki)
            finally:
                stop_tcpdump(dump)
        finally:
            stop_mosquitto(broker)
        certs = out / "mqtt-tls-certs"
        certs.mkdir(exist_ok=True)
        for k in ("ca", "broker", "device"):
            shutil.copy(pki[k], certs / pki[k].name)
    for f in ("mqtt-mosquitto.pcap", "mqtt-tls.pcap"):
        print(f"wrote {out / f} ({(out / f).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
