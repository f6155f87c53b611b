#!/usr/bin/env python3
"""Record the captures of the authentication checks (issue #9) from real peers on loopback, with certificates
from the test PKI in pcaps/certgen.py: asyncua OPC UA servers and clients, Debian's mosquitto broker with
paho-mqtt and Python ssl clients. Nothing on the wire is crafted; the only liberties are a client that
chooses None although the server does not offer it (downgrade) and one whose ReceiverCertificateThumbprint
names the wrong certificate, both by patching the client library, never the bytes.

    python pcaps/make_auth_captures.py [--out pcaps/]

Every run makes a new PKI, so all captures, auth-pki/ and auth-registry.yaml are written together.

Every peer has its own loopback address so the device registry can tell them apart (OPC UA server
127.0.0.20, MQTT brokers 127.0.0.50 (authenticated, TLS 1.2) and 127.0.0.51 (anonymous, TLS 1.3)).

OPC UA (one server run and one capture each; the client presents the named certificate from the PKI,
with the intermediate CA in its chain when CA-issued; Basic256Sha256 Sign unless said otherwise):
  auth-opcua-valid.pcap          device-valid from .101: passes every check (the "does not trigger" capture)
  auth-opcua-encrypt.pcap        device-valid from .101 with SignAndEncrypt
  auth-opcua-expired.pcap        .102   auth-opcua-notyetvalid.pcap  .103   auth-opcua-expiring.pcap  .104
  auth-opcua-selfsigned.pcap     .105   auth-opcua-weakkey.pcap      .106   auth-opcua-sha1.pcap      .107
  auth-opcua-wronguri.pcap       .108 (SAN URI urn:somewhere:else, CreateSession says device-wronguri)
  auth-opcua-revoked.pcap        .109   auth-opcua-untrusted.pcap    .110 (issued by someone else's CA)
  auth-opcua-badsig.pcap         .111 device-badsig's certificate with one signature byte flipped
  auth-opcua-changed.pcap        .112 two sessions of device-changed: the pinned certificate, then another
  auth-opcua-unknown.pcap        .113 a trusted certificate of urn:otids:test:rogue, a device not registered
  auth-opcua-thumbprint.pcap     .114 OPN whose ReceiverCertificateThumbprint names device-valid's certificate
                                 instead of the server's
  auth-opcua-none.pcap           policy None: anonymous session from .116, UserName session from .115
                                 (password in clear: the user token policy has no security policy)
  auth-opcua-basic256.pcap       .117 deprecated Basic256 (Sign)
  auth-opcua-basic128rsa15.pcap  .118 deprecated Basic128Rsa15 (Sign)
  auth-opcua-downgrade.pcap      .119 server advertises Basic256Sha256 SignAndEncrypt only; client uses None
MQTT / TLS:
  auth-mqtt-cleartext.pcap       line3-gw (user line3) from .71 accepted; intruder from .72: 6 wrong passwords
  auth-mqtt-anonymous.pcap       anonymous probe-client from .77 on the anonymous broker
  auth-mqtt-clientid.pcap        sensor-07 from .73 and, while connected, from .74 (the broker takes the
                                 session over); plant-sub from .75, DISCONNECT, then from .76 (roaming)
  auth-tls12-clientcerts.pcap    TLS 1.2, client certificate required: device-valid .61 (accepted), expired
                                 .62, self-signed .63, weak key .64, SHA-1 .65, untrusted .66, revoked .67
                                 (refused by the broker after its Certificate message), impostor .68 (a
                                 trusted certificate with device-valid's subject, accepted)
  auth-tls13.pcap                TLS 1.3, device-valid .61 with its certificate (encrypted on the wire)
Also written: auth-pki/ (public certificates only: root, intermediate, other CA, server, every leaf; trust/
with the root and the intermediate's CRL; trust-stale-crl/ with a CRL past its nextUpdate), and
auth-registry.yaml (the devices above with their addresses, URIs, pins and subjects). Private keys live in a
temporary directory and are deleted. Needs root (tcpdump on lo), asyncua, mosquitto and paho-mqtt.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import certgen  # noqa: E402

OPCUA_SERVER = "127.0.0.20"
OPCUA_PORT = 4840
BROKER_AUTH, BROKER_ANON = "127.0.0.50", "127.0.0.51"
URL = f"opc.tcp://{OPCUA_SERVER}:{OPCUA_PORT}/otids/"
BASE = "urn:otids:test"


def die(msg: str) -> None:
    print(f"make_auth_captures: error: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------- capture

class Capture:
    """tcpdump on lo for one BPF filter, armed before the traffic starts and stopped after it drains."""

    def __init__(self, path: Path, bpf: str):
        self.path, self.bpf = path, bpf

    def __enter__(self):
        self.proc = subprocess.Popen(["tcpdump", "-i", "lo", "-n", "-U", "-s", "0", "-w", str(self.path), self.bpf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                die(f"tcpdump exited: {self.proc.stderr.read()}")
            if select.select([self.proc.stderr], [], [], 0.2)[0] and "listening" in self.proc.stderr.readline():
                time.sleep(0.3)
                return self
        die("tcpdump did not start")

    def __exit__(self, *exc):
        time.sleep(1.0)  # let tcpdump drain what the kernel still holds
        self.proc.send_signal(signal.SIGINT)
        stats = self.proc.communicate(timeout=10)[1].strip().splitlines()
        print(f"wrote {self.path} ({self.path.stat().st_size} bytes; tcpdump: {', '.join(stats[-3:])})")


# ---------------------------------------------------------------------------------------------- PKI

class Material:
    """The PKI of these captures: public parts under out/auth-pki, private keys in a temporary directory."""

    def __init__(self, out: Path, keydir: Path):
        self.pki = certgen.make_pki(BASE)
        p = self.pki
        self.keydir = keydir
        self.server = certgen.issue("opcua-server", p.root, uris=(f"{BASE}:server",), dns=("localhost",),
                                    ips=(OPCUA_SERVER,))
        self.broker = certgen.issue("broker.otids.test", p.root, dns=("broker.otids.test",),
                                    ips=(BROKER_AUTH, BROKER_ANON), client=False)
        # the same device re-issued (a certificate swap the registry's pin must catch), a device nobody
        # registered, and an impostor: trusted, but with device-valid's subject and another key
        self.changed_a = certgen.issue("device-changed", p.intermediate, uris=(f"{BASE}:device-changed",))
        self.changed_b = certgen.issue("device-changed", p.intermediate, uris=(f"{BASE}:device-changed",))
        self.rogue = certgen.issue("device-rogue", p.intermediate, uris=(f"{BASE}:rogue",))
        # one CA-issued certificate per scenario whose point is not the certificate (policies, thumbprint)
        self.own = {n: certgen.issue(f"device-{n}", p.intermediate, uris=(f"{BASE}:device-{n}",))
                    for n in ("thumbprint", "basic256", "basic128rsa15", "badsig")}
        self.impostor = certgen.issue("device-valid", p.intermediate, uris=(f"{BASE}:device-valid",))
        der = bytearray(self.own["badsig"].der)
        der[-5] ^= 0xFF  # inside the signature BIT STRING: the certificate still parses, the signature fails
        self.badsig = certgen.Issued(x509.load_der_x509_certificate(bytes(der)), self.own["badsig"].key)
        self.stale_crl = certgen.crl(p.intermediate, [p.leaves["revoked"]],
                                     next_update=certgen.NOW - 2 * certgen.DAY,
                                     last_update=certgen.NOW - 32 * certgen.DAY)
        self._write_public(out / "auth-pki")

    def _write_public(self, d: Path) -> None:
        if d.exists():
            shutil.rmtree(d)
        (d / "leaves").mkdir(parents=True)
        p = self.pki
        for name, iss in (("root", p.root), ("intermediate", p.intermediate), ("opcua-server", self.server),
                          ("broker", self.broker)):
            (d / f"{name}.pem").write_bytes(iss.pem)
        for name, iss in {**p.leaves, "changed-a": self.changed_a, "changed-b": self.changed_b,
                          "rogue": self.rogue, "impostor": self.impostor, **self.own,
                          "badsig": self.badsig}.items():
            (d / "leaves" / f"{name}.pem").write_bytes(iss.pem)
        p.write_trust_store(d / "trust")
        stale = d / "trust-stale-crl"
        stale.mkdir()
        (stale / "root-ca.pem").write_bytes(p.root.pem)
        (stale / "intermediate.crl").write_bytes(self.stale_crl.public_bytes(serialization.Encoding.PEM))

    def files(self, name: str, iss: certgen.Issued, chain: bool) -> tuple[Path, Path, Path | None]:
        """Certificate (PEM), key (PEM, .key.pem so asyncua reads it as PEM) and the intermediate for chains."""
        c, k = self.keydir / f"{name}.pem", self.keydir / f"{name}.key.pem"
        c.write_bytes(iss.pem)
        k.write_bytes(iss.key_pem)
        os.chmod(k, 0o644)  # mosquitto drops privileges
        inter = None
        if chain:
            inter = self.keydir / "intermediate.pem"
            inter.write_bytes(self.pki.intermediate.pem)
        return c, k, inter

    def bundle(self, name: str, iss: certgen.Issued, chain: bool) -> tuple[Path, Path]:
        """PEM with the leaf and (for TLS) the intermediate, plus the key."""
        c, k, _ = self.files(name, iss, False)
        if chain:
            c.write_bytes(iss.pem + self.pki.intermediate.pem)
        return c, k


def sha256(iss: certgen.Issued) -> str:
    return iss.cert.fingerprint(hashes.SHA256()).hex()


# ---------------------------------------------------------------------------------------------- OPC UA

SOURCE: dict = {"ip": None, "wrong_thumbprint": None}


def patch_asyncua() -> None:
    """Source addresses per client, and the two deliberate client faults (see the module doc)."""
    from asyncua import Client
    from asyncua.client.ua_client import UaClient, UaClientState

    async def connect_socket(self, host, port):
        self._set_state(UaClientState.CONNECTING)
        local = (SOURCE["ip"], 0) if SOURCE["ip"] else None
        await asyncio.wait_for(asyncio.get_running_loop().create_connection(self._make_protocol, host, port,
                                                                            local_addr=local), self._timeout)
        self._set_state(UaClientState.SOCKET_OPEN)

    UaClient.connect_socket = connect_socket

    orig_open = UaClient.open_secure_channel

    async def open_secure_channel(self, params):
        wrong = SOURCE["wrong_thumbprint"]
        pol = self.security_policy
        if wrong is None or not getattr(pol, "peer_certificate", None):
            return await orig_open(self, params)
        right, pol.peer_certificate = pol.peer_certificate, wrong  # only the thumbprint is computed from it
        try:
            return await orig_open(self, params)
        finally:
            pol.peer_certificate = right

    UaClient.open_secure_channel = open_secure_channel

    orig_find = Client.find_endpoint

    def find_endpoint(endpoints, security_mode, policy_uri):
        try:
            return orig_find(endpoints, security_mode, policy_uri)
        except Exception:
            if SOURCE.get("careless"):
                return endpoints[0]  # a client that takes whatever it gets
            raise

    Client.find_endpoint = staticmethod(find_endpoint)


async def opcua_server(m: Material, policies: list, users: bool = False):
    from asyncua import Server, ua
    from asyncua.crypto.permission_rules import User, UserRole
    from asyncua.server.user_managers import UserManager

    class Users(UserManager):
        def get_user(self, iserver, username=None, password=None, certificate=None):
            if username is None:
                return User(role=UserRole.User)
            if username == "operator" and password == "s3cret-Passw0rd":
                return User(role=UserRole.User, name=username)
            return None

    c, k, _ = m.files("server", m.server, False)
    server = Server(user_manager=Users() if users else None)
    await server.init()
    server.set_endpoint(URL)
    server.set_server_name("otids auth test server")
    await server.set_application_uri(f"{BASE}:server")
    await server.load_certificate(str(c))
    await server.load_private_key(str(k))
    server.set_security_policy([getattr(ua.SecurityPolicyType, p) for p in policies])
    if users:
        server.set_security_IDs(["Anonymous", "Username"])
    await server.nodes.objects.add_variable(ua.NodeId("Line3.Speed", 2), ua.QualifiedName("Speed", 2), 12.5)
    return server


async def opcua_session(m: Material, src: str, app_uri: str, iss: certgen.Issued | None, *, chain: bool = True,
                        policy: str | None = "Basic256Sha256", mode: str = "Sign", user=None) -> None:
    from asyncua import Client, ua
    from asyncua.crypto import security_policies as sp
    SOURCE["ip"] = src
    client = Client(URL, timeout=10)
    client.application_uri = app_uri
    client.name = client.description = f"otids test client {app_uri.rsplit(':', 1)[-1]}"
    if user:
        client.set_user(user[0])
        client.set_password(user[1])
    if policy is not None:
        cert, key, inter = m.files(app_uri.rsplit(":", 1)[-1] + f"-{src}", iss, chain)
        srv, _, _ = m.files("server-public", m.server, False)
        await client.set_security(getattr(sp, f"SecurityPolicy{policy}"), str(cert), str(key),
                                  server_certificate=str(srv), mode=getattr(ua.MessageSecurityMode, mode),
                                  certificate_chain=[str(inter)] if inter else None)
    try:
        await client.connect()
        await client.get_node(ua.NodeId("Line3.Speed", 2)).read_value()
    except Exception as e:  # a server may refuse; what went over the wire is what the capture is for
        print(f"  {src} {app_uri}: {type(e).__name__}: {e}")
    finally:
        try:
            await client.disconnect()
        except Exception:
            pass
    await asyncio.sleep(0.2)


SIGN = ["Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"]


async def opcua_all(m: Material, out: Path) -> None:
    patch_asyncua()
    L = m.pki.leaves
    runs = [
        ("valid", SIGN, [(".101", f"{BASE}:device-valid", L["valid"], {})]),
        ("encrypt", SIGN, [(".101", f"{BASE}:device-valid", L["valid"], {"mode": "SignAndEncrypt"})]),
        ("expired", SIGN, [(".102", f"{BASE}:device-expired", L["expired"], {})]),
        ("notyetvalid", SIGN, [(".103", f"{BASE}:device-future", L["not_yet_valid"], {})]),
        ("expiring", SIGN, [(".104", f"{BASE}:device-expiring", L["expiring"], {})]),
        ("selfsigned", SIGN, [(".105", f"{BASE}:device-selfsigned", L["self_signed"], {"chain": False})]),
        ("weakkey", SIGN, [(".106", f"{BASE}:device-weakkey", L["weak_key"], {})]),
        ("sha1", SIGN, [(".107", f"{BASE}:device-sha1", L["sha1"], {})]),
        ("wronguri", SIGN, [(".108", f"{BASE}:device-wronguri", L["wrong_uri"], {})]),
        ("revoked", SIGN, [(".109", f"{BASE}:device-revoked", L["revoked"], {})]),
        ("untrusted", SIGN, [(".110", f"{BASE}:device-untrusted", L["untrusted"], {"chain": False})]),
        ("badsig", SIGN, [(".111", f"{BASE}:device-badsig", m.badsig, {})]),
        ("changed", SIGN, [(".112", f"{BASE}:device-changed", m.changed_a, {}),
                           (".112", f"{BASE}:device-changed", m.changed_b, {})]),
        ("unknown", SIGN, [(".113", f"{BASE}:rogue", m.rogue, {})]),
        ("thumbprint", SIGN, [(".114", f"{BASE}:device-thumbprint", m.own["thumbprint"], {"wrong_thumbprint": True})]),
        ("none", ["NoSecurity"], [(".116", f"{BASE}:device-anonymous", None, {"policy": None}),
                                  (".115", f"{BASE}:device-operator", None,
                                   {"policy": None, "user": ("operator", "s3cret-Passw0rd")})]),
        ("basic256", ["Basic256_Sign"],
         [(".117", f"{BASE}:device-basic256", m.own["basic256"], {"policy": "Basic256"})]),
        ("basic128rsa15", ["Basic128Rsa15_Sign"],
         [(".118", f"{BASE}:device-basic128rsa15", m.own["basic128rsa15"], {"policy": "Basic128Rsa15"})]),
        ("downgrade", ["Basic256Sha256_SignAndEncrypt"],
         [(".119", f"{BASE}:device-downgrade", None, {"policy": None, "careless": True})]),
    ]
    for name, policies, sessions in runs:
        server = await opcua_server(m, policies, users=name == "none")
        async with server:
            with Capture(out / f"auth-opcua-{name}.pcap", f"host {OPCUA_SERVER} and tcp port {OPCUA_PORT}"):
                for src, uri, iss, kw in sessions:
                    kw = dict(kw)
                    SOURCE["wrong_thumbprint"] = L["valid"].der if kw.pop("wrong_thumbprint", False) else None
                    SOURCE["careless"] = kw.pop("careless", False)
                    await opcua_session(m, "127.0.0" + src, uri, iss, **kw)
                SOURCE["wrong_thumbprint"] = None
                SOURCE["careless"] = False
                await asyncio.sleep(0.3)


# ---------------------------------------------------------------------------------------------- MQTT / TLS

def start_broker(conf: Path, ports: list[tuple[str, int]]) -> subprocess.Popen:
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            die(f"mosquitto exited: {proc.stderr.read()}")
        try:
            for hp in ports:
                socket.create_connection(hp, timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    die("mosquitto did not start listening")


def mqtt_client(cid: str, user=None, pw=None):
    import paho.mqtt.client as mqtt
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311)
    if user:
        c.username_pw_set(user, pw)
    return c


def connect(c, host: str, port: int, src: str, keepalive: int = 30) -> int:
    res: dict = {}
    c.on_connect = lambda cl, ud, flags, rc, props=None: res.setdefault("rc", getattr(rc, "value", rc))
    c.connect(host, port, keepalive=keepalive, bind_address=src)
    c.loop_start()
    deadline = time.monotonic() + 5
    while "rc" not in res and time.monotonic() < deadline:
        time.sleep(0.02)
    return res.get("rc", -1)


def finish(c) -> None:
    c.disconnect()
    time.sleep(0.2)
    c.loop_stop()


def mqtt_plain(out: Path) -> None:
    bpf = f"(host {BROKER_AUTH} or host {BROKER_ANON}) and tcp port 1883"
    with Capture(out / "auth-mqtt-cleartext.pcap", bpf):
        c = mqtt_client("line3-gw", "line3", "l1ne3-Secret")
        if connect(c, BROKER_AUTH, 1883, "127.0.0.71") != 0:
            die("line3-gw refused")
        c.publish("plant/line3/state", b"running", qos=1).wait_for_publish(5)
        finish(c)
        for i in range(6):  # password guessing: each CONNECT refused with return code 5
            bad = mqtt_client("intruder", "line3", f"guess{i}")
            if connect(bad, BROKER_AUTH, 1883, "127.0.0.72") == 0:
                die("a wrong password was accepted")
            bad.loop_stop()
            bad.disconnect()
            time.sleep(0.1)
    with Capture(out / "auth-mqtt-anonymous.pcap", bpf):
        c = mqtt_client("probe-client")
        if connect(c, BROKER_ANON, 1883, "127.0.0.77") != 0:
            die("anonymous client refused")
        c.publish("lab/probe", b"hello", qos=1).wait_for_publish(5)
        finish(c)
    with Capture(out / "auth-mqtt-clientid.pcap", bpf):
        a = mqtt_client("sensor-07", "sensor", "s3nsor")
        if connect(a, BROKER_AUTH, 1883, "127.0.0.73") != 0:
            die("sensor-07 refused")
        a.publish("plant/s7/temp", b"20.5", qos=1).wait_for_publish(5)
        a.reconnect_delay_set(30, 60)  # once taken over, stay away for the rest of the capture
        b = mqtt_client("sensor-07", "sensor", "s3nsor")  # a second device with the same client id
        if connect(b, BROKER_AUTH, 1883, "127.0.0.74") != 0:
            die("second sensor-07 refused")
        b.publish("plant/s7/temp", b"99.9", qos=1).wait_for_publish(5)
        time.sleep(0.3)
        finish(b)
        a.loop_stop()
        r = mqtt_client("plant-sub", "operator", "op-secret")  # roams: disconnects, then connects elsewhere
        if connect(r, BROKER_AUTH, 1883, "127.0.0.75") != 0:
            die("plant-sub refused")
        finish(r)
        r = mqtt_client("plant-sub", "operator", "op-secret")
        if connect(r, BROKER_AUTH, 1883, "127.0.0.76") != 0:
            die("plant-sub refused at its second address")
        finish(r)


def tls_context(version, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the clients under test are not the subject; the broker judges them
    ctx.minimum_version = ctx.maximum_version = version
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let weak keys and SHA-1 certificates be sent at all
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def mqtt_tls(m: Material, out: Path) -> None:
    L = m.pki.leaves
    with Capture(out / "auth-tls12-clientcerts.pcap", f"host {BROKER_AUTH} and tcp port 8883"):
        for src, name, iss, chain, accepted in (
                (".61", "valid", L["valid"], True, True), (".62", "expired", L["expired"], True, False),
                (".63", "selfsigned", L["self_signed"], False, False), (".64", "weakkey", L["weak_key"], True, False),
                (".65", "sha1", L["sha1"], True, False), (".66", "untrusted", L["untrusted"], False, False),
                (".67", "revoked", L["revoked"], True, False), (".68", "impostor", m.impostor, True, True)):
            cert, key = m.bundle(f"tls-{name}", iss, chain)
            ctx = tls_context(ssl.TLSVersion.TLSv1_2, cert, key)
            if accepted:
                c = mqtt_client(iss.cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)
                c.tls_set_context(ctx)
                if connect(c, BROKER_AUTH, 8883, "127.0.0" + src) != 0:
                    die(f"{name}: TLS client refused")
                c.publish("plant/tls/temp", b"22.0", qos=1).wait_for_publish(5)
                finish(c)
            else:
                s = socket.create_connection((BROKER_AUTH, 8883), source_address=("127.0.0" + src, 0), timeout=5)
                try:
                    t = ctx.wrap_socket(s)
                    t.sendall(b"\x10\x00")  # TLS 1.2: the refusal comes during the handshake, this is not reached
                    t.recv(16)
                    die(f"{name}: broker accepted a bad client certificate")
                except (ssl.SSLError, OSError) as e:
                    print(f"  {name}: refused as expected ({type(e).__name__})")
                finally:
                    s.close()
            time.sleep(0.2)
    with Capture(out / "auth-tls13.pcap", f"host {BROKER_ANON} and tcp port 8883"):
        cert, key = m.bundle("tls13-valid", L["valid"], True)
        c = mqtt_client("device-valid")
        c.tls_set_context(tls_context(ssl.TLSVersion.TLSv1_3, cert, key))
        if connect(c, BROKER_ANON, 8883, "127.0.0.61") != 0:
            die("TLS 1.3 client refused")
        c.publish("plant/tls13/temp", b"22.5", qos=1).wait_for_publish(5)
        finish(c)


def mqtt_all(m: Material, out: Path) -> None:
    d = m.keydir
    pw = d / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "line3", "l1ne3-Secret"], check=True)
    for user, secret in (("sensor", "s3nsor"), ("operator", "op-secret")):
        subprocess.run(["mosquitto_passwd", "-b", str(pw), user, secret], check=True)
    os.chmod(pw, 0o644)
    ca = d / "broker-ca.pem"
    ca.write_bytes(m.pki.root.pem)
    crl = d / "intermediate.crl"
    crl.write_bytes(m.pki.revocations.public_bytes(serialization.Encoding.PEM))
    bc, bk, _ = m.files("broker", m.broker, False)
    conf = d / "mosquitto.conf"
    tls = f"cafile {ca}\ncertfile {bc}\nkeyfile {bk}\nrequire_certificate true\nuse_identity_as_username true\n"
    conf.write_text(f"""per_listener_settings true
persistence false
log_dest stderr
listener 1883 {BROKER_AUTH}
allow_anonymous false
password_file {pw}
listener 1883 {BROKER_ANON}
allow_anonymous true
listener 8883 {BROKER_AUTH}
{tls}crlfile {crl}
tls_version tlsv1.2
listener 8883 {BROKER_ANON}
{tls}tls_version tlsv1.3
""")
    broker = start_broker(conf, [(BROKER_AUTH, 1883), (BROKER_ANON, 1883), (BROKER_AUTH, 8883), (BROKER_ANON, 8883)])
    try:
        time.sleep(0.3)
        mqtt_plain(out)
        mqtt_tls(m, out)
    finally:
        broker.terminate()
        broker.wait(timeout=10)


# ---------------------------------------------------------------------------------------------- registry

def write_registry(m: Material, out: Path) -> None:
    L = m.pki.leaves
    dev = []

    def opc(name, ip, uri, pins=(), extra=""):
        pin = f"\n      certificate_sha256: [{', '.join(pins)}]" if pins else ""
        dev.append(f"  - name: {name}\n    ips: [{ip}]\n    roles: [opcua_client]\n    opcua:\n"
                   f"      application_uri: {uri}{pin}{extra}")

    dev.append(f"  - name: opcua-server\n    ips: [{OPCUA_SERVER}]\n    roles: [opcua_server]\n    opcua:\n"
               f"      application_uri: {BASE}:server\n      certificate_sha256: [{sha256(m.server)}]\n"
               f"      issuer: \"{m.pki.root.cert.subject.rfc4514_string()}\"")
    opc("hmi-valid", "127.0.0.101", f"{BASE}:device-valid", [sha256(L["valid"])])
    for ip, name, uri in ((102, "expired", "device-expired"), (103, "future", "device-future"),
                          (104, "expiring", "device-expiring"), (105, "selfsigned", "device-selfsigned"),
                          (106, "weakkey", "device-weakkey"), (107, "sha1", "device-sha1"),
                          (108, "wronguri", "device-wronguri"), (109, "revoked", "device-revoked"),
                          (110, "untrusted", "device-untrusted"), (111, "badsig", "device-badsig"),
                          (114, "thumbprint", "device-thumbprint"), (117, "basic256", "device-basic256"),
                          (118, "basic128rsa15", "device-basic128rsa15"), (119, "downgrade", "device-downgrade"),
                          (115, "operator", "device-operator"), (116, "anonymous", "device-anonymous")):
        opc(f"hmi-{name}", f"127.0.0.{ip}", f"{BASE}:{uri}")
    opc("hmi-changed", "127.0.0.112", f"{BASE}:device-changed", [sha256(m.changed_a)])
    dev.append(f"  - name: line3-gateway\n    ips: [127.0.0.71]\n    roles: [mqtt_client]\n    mqtt:\n"
               f"      client_ids: [line3-gw]\n      usernames: [line3]")
    dev.append("  - name: sensor-07\n    ips: [127.0.0.73]\n    roles: [mqtt_client]\n    mqtt:\n"
               "      client_ids: [sensor-07]\n      usernames: [sensor]")
    dev.append("  - name: plant-sub\n    ips: [127.0.0.75, 127.0.0.76]\n    roles: [mqtt_client]\n    mqtt:\n"
               "      client_ids: [plant-sub]\n      usernames: [operator]")
    dev.append(f"  - name: tls-device-valid\n    ips: [127.0.0.61]\n    roles: [mqtt_client]\n    mqtt:\n"
               f"      client_ids: [device-valid]\n    tls:\n"
               f"      client_subjects: [\"{L['valid'].cert.subject.rfc4514_string()}\"]")
    for ip, name in ((62, "expired"), (63, "selfsigned"), (64, "weakkey"), (65, "sha1"), (66, "untrusted"),
                     (67, "revoked")):
        dev.append(f"  - name: tls-{name}\n    ips: [127.0.0.{ip}]\n    roles: [mqtt_client]")
    dev.append(f"  - name: broker\n    ips: [{BROKER_AUTH}, {BROKER_ANON}]\n    roles: [mqtt_broker]")
    text = ("# Device registry of the auth-*.pcap captures (written by make_auth_captures.py with the pins of the\n"
            "# certificates it generated). Not registered on purpose: 127.0.0.113 (urn:otids:test:rogue),\n"
            "# 127.0.0.68 (the impostor), 127.0.0.72 (intruder), 127.0.0.74 (the second sensor-07), .77 (probe).\n"
            "policy:\n  require_ca_issued: true\n  expiry_warning_days: 30\n  min_rsa_bits: 2048\n"
            "  opcua_min_security_mode: Sign\n  mqtt_require_auth: true\n  mqtt_require_tls: false\n"
            "trust_store: auth-pki/trust\n\ndevices:\n" + "\n".join(dev) + "\n")
    (out / "auth-registry.yaml").write_text(text)
    print(f"wrote {out / 'auth-registry.yaml'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE), help="output directory (default: pcaps/)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        die("needs root for tcpdump on lo")
    for tool in ("tcpdump", "mosquitto", "mosquitto_passwd"):
        if shutil.which(tool) is None:
            die(f"{tool} not found")
    logging.basicConfig(level=logging.CRITICAL)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="otids-auth-") as td:
        keydir = Path(td)
        os.chmod(keydir, 0o755)
        m = Material(out, keydir)
        asyncio.run(opcua_all(m, out))
        mqtt_all(m, out)
        write_registry(m, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
