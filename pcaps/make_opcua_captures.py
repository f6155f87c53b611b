"""Make the OPC UA test captures: a real asyncua server and client on loopback, recorded with tcpdump.

    python pcaps/make_opcua_captures.py [--out pcaps/]

Writes (one capture per scenario, each its own server run):
  opcua-none-anonymous.pcap   policy None, anonymous token: GetEndpoints, browse, read, write (incl. a write
                              to a read-only node: operation status BadNotWritable), call, subscription +
                              monitored item + publish, RegisterNodes, TranslateBrowsePaths, then a request
                              on the closed session (ServiceFault BadSessionIdInvalid).
  opcua-none-username.pcap    policy None, UserName token (user "operator"), on non-standard port 48401
                              (found by the HEL/ACK content probe, not by port).
  opcua-sign.pcap             Basic256Sha256 Sign with certificates generated here (CA-signed client and
                              server certificates): OPN encrypted, service bodies signed only (clear).
  opcua-encrypt.pcap          Basic256Sha256 SignAndEncrypt: every body after the OPN headers is ciphertext.
  opcua-chunked.pcap          server limited to 8192-byte chunks: a 60 kB ByteString written and read back
                              (multi-chunk request and response).
  opcua-err.pcap              raw HEL/ACK, then an OPN chunk larger than the server's 8192-byte receive
                              buffer: the server answers ERR Bad_RequestTooLarge.
  opcua-certs/                the generated certificates (DER), so tests can compare what the pcaps carry.
Private keys live only in a temporary directory and are deleted. Requires root (tcpdump on lo) and asyncua.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
NS_URI = "urn:otids:test:line3"


# ---------------------------------------------------------------------------------------------- certificates

def _name(cn: str, org: str = "otids test") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")])


def make_pki(outdir: Path, keydir: Path) -> dict:
    """A CA and two leaf certificates (server, client) as OPC 10000-6 6.2.2 asks: SAN URI = application
    URI, DNS/IP of the host, digitalSignature + keyEncipherment + dataEncipherment + nonRepudiation."""
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    ca_key = rsa.generate_private_key(65537, 2048)
    ca = (x509.CertificateBuilder().subject_name(_name("otids test CA")).issuer_name(_name("otids test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    out = {"ca": ca}
    for role, uri, eku in (("server", "urn:otids:test:server", ExtendedKeyUsageOID.SERVER_AUTH),
                           ("client", "urn:otids:test:client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = rsa.generate_private_key(65537, 2048)
        san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri), x509.DNSName("localhost"),
                                           x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        cert = (x509.CertificateBuilder().subject_name(_name(f"otids test {role}")).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + dt.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(san, critical=False)
                .add_extension(x509.KeyUsage(True, True, True, True, False, False, False, False, False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                                                     if role == "server" else [eku]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        (keydir / f"{role}.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
        (keydir / f"{role}.key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        out[role] = cert
    outdir.mkdir(parents=True, exist_ok=True)
    for role, cert in out.items():
        (outdir / f"{role}.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return out


# ---------------------------------------------------------------------------------------------- capture

class Capture:
    def __init__(self, path: Path, port: int):
        self.path, self.port = path, port
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "-s", "0", "-w", str(self.path),
                                      f"tcp port {self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # tcpdump says "listening on lo" on stderr once the capture is armed
        deadline = time.time() + 10
        line = b""
        while time.time() < deadline and b"listening" not in line:
            line = self.proc.stderr.readline()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        time.sleep(0.5)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)


# ---------------------------------------------------------------------------------------------- server

async def make_server(port: int, keydir: Path, *, secure: bool, users: bool, small_chunks: bool = False):
    from asyncua import Server, ua
    from asyncua.common.connection import TransportLimits
    from asyncua.crypto.permission_rules import User, UserRole
    from asyncua.server.user_managers import UserManager

    class Users(UserManager):
        def get_user(self, iserver, username=None, password=None, certificate=None):
            if username is None and certificate is None:
                return User(role=UserRole.User)
            if username == "operator" and password == "s3cret-Passw0rd":
                return User(role=UserRole.User, name=username)
            return None

    server = Server(user_manager=Users() if users else None)
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/otids/")
    server.set_server_name("otids test server")
    await server.set_application_uri("urn:otids:test:server")
    if small_chunks:
        server.limits = TransportLimits(max_recv_buffer=8192, max_send_buffer=8192, max_chunk_count=64,
                                        max_message_size=512 * 1024)
    if secure:
        await server.load_certificate(str(keydir / "server.der"))
        await server.load_private_key(str(keydir / "server.key.pem"))
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity,
                                    ua.SecurityPolicyType.Basic256Sha256_Sign,
                                    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    if users:
        server.set_security_IDs(["Username"])
    idx = await server.register_namespace(NS_URI)
    line = await server.nodes.objects.add_object(ua.NodeId("Line3", idx), ua.QualifiedName("Line3", idx))
    speed = await line.add_variable(ua.NodeId("Line3.Speed", idx), ua.QualifiedName("Speed", idx), 12.5)
    await speed.set_writable()
    await line.add_variable(ua.NodeId("Line3.Label", idx), ua.QualifiedName("Label", idx), "conveyor 3")  # read-only
    blob = await line.add_variable(ua.NodeId("Line3.Blob", idx), ua.QualifiedName("Blob", idx), b"",
                                   varianttype=ua.VariantType.ByteString)
    await blob.set_writable()
    counts = await line.add_variable(ua.NodeId(1001, idx), ua.QualifiedName("Counts", idx), list(range(40)),
                                     varianttype=ua.VariantType.Int32)
    await counts.set_writable()

    async def reset(parent, level):
        return [ua.Variant(True, ua.VariantType.Boolean)]

    await line.add_method(ua.NodeId("Line3.Reset", idx), ua.QualifiedName("Reset", idx), reset,
                          [ua.VariantType.Int32], [ua.VariantType.Boolean])
    return server, idx


# ---------------------------------------------------------------------------------------------- clients

async def session_work(client, idx, *, fault: bool):
    from asyncua import ua
    await client.get_endpoints()
    objects = client.nodes.objects
    await objects.get_children()
    speed = client.get_node(ua.NodeId("Line3.Speed", idx))
    label = client.get_node(ua.NodeId("Line3.Label", idx))
    counts = client.get_node(ua.NodeId(1001, idx))
    await speed.read_value()
    await speed.write_value(ua.DataValue(ua.Variant(47.25, ua.VariantType.Double)))
    await counts.write_value(ua.DataValue(ua.Variant(list(range(100, 140)), ua.VariantType.Int32)))
    try:  # read-only node: the server refuses with BadNotWritable / BadUserAccessDenied
        await label.write_value(ua.DataValue(ua.Variant("hacked", ua.VariantType.String)))
    except ua.UaStatusCodeError:
        pass
    line = client.get_node(ua.NodeId("Line3", idx))
    await line.call_method(ua.NodeId("Line3.Reset", idx), ua.Variant(3, ua.VariantType.Int32))
    await client.nodes.root.get_child(["0:Objects", f"{idx}:Line3", f"{idx}:Speed"])
    await client.register_nodes([speed, counts])

    class Handler:
        def datachange_notification(self, node, val, data):
            pass

    sub = await client.create_subscription(100, Handler())
    await sub.subscribe_data_change(speed)
    await asyncio.sleep(0.6)
    await sub.delete()
    if fault:
        await client.close_session()
        try:  # the session is gone: the server answers with a ServiceFault (BadSessionIdInvalid/Closed)
            await client.uaclient.read(ua.ReadParameters())
        except Exception:
            pass


async def run_client(port: int, idx: int, keydir: Path, *, user=None, policy=None, mode=None, fault=False,
                     chunked=False):
    from asyncua import Client, ua
    client = Client(f"opc.tcp://127.0.0.1:{port}/otids/", timeout=10)
    client.application_uri = "urn:otids:test:client"
    client.name = "otids test client"
    client.description = "otids test client"
    if user:
        client.set_user(user[0])
        client.set_password(user[1])
    if policy is not None:
        await client.set_security(policy, str(keydir / "client.der"), str(keydir / "client.key.pem"),
                                  server_certificate=str(keydir / "server.der"), mode=mode)
    await client.connect()
    try:
        if chunked:
            blob = client.get_node(ua.NodeId("Line3.Blob", idx))
            data = bytes(range(256)) * 235  # 60160 bytes: 8 chunks of 8192 each way
            await blob.write_value(ua.DataValue(ua.Variant(data, ua.VariantType.ByteString)))
            back = await blob.read_value()
            assert back == data, "chunked read-back differs"
        else:
            await session_work(client, idx, fault=fault)
    finally:
        try:
            await client.disconnect()
        except Exception:
            pass


async def scenario(name: str, port: int, keydir: Path, out: Path, **kw) -> None:
    srv_kw = {k: kw.pop(k) for k in ("secure", "users", "small_chunks") if k in kw}
    server, idx = await make_server(port, keydir, secure=srv_kw.get("secure", False),
                                    users=srv_kw.get("users", False), small_chunks=srv_kw.get("small_chunks", False))
    async with server:
        with Capture(out / name, port):
            await run_client(port, idx, keydir, **kw)
            await asyncio.sleep(0.3)
    print(f"wrote {out / name} ({(out / name).stat().st_size} bytes)")


def _ua_string(s: bytes) -> bytes:
    return struct.pack("<i", len(s)) + s


async def err_scenario(port: int, keydir: Path, out: Path) -> None:
    """The server is limited to 8192-byte chunks; an OPN chunk of 10000 bytes exceeds the negotiated
    ReceiveBufferSize and the server answers ERR Bad_RequestTooLarge (OPC 10000-6 7.1.2.4)."""
    server, idx = await make_server(port, keydir, secure=False, users=False, small_chunks=True)
    name = "opcua-err.pcap"
    async with server:
        with Capture(out / name, port):
            loop = asyncio.get_running_loop()

            def talk():
                url = f"opc.tcp://127.0.0.1:{port}/otids/".encode()
                hel = struct.pack("<5I", 0, 65535, 65535, 0, 0) + _ua_string(url)
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(b"HELF" + struct.pack("<I", 8 + len(hel)) + hel)
                    s.recv(4096)
                    asym = _ua_string(b"http://opcfoundation.org/UA/SecurityPolicy#None") + struct.pack("<ii", -1, -1)
                    body = struct.pack("<II", 1, 1) + bytes.fromhex("0100be01") + b"\0" * 9900
                    msg = struct.pack("<I", 0) + asym + body
                    s.sendall(b"OPNF" + struct.pack("<I", 8 + len(msg)) + msg)
                    try:
                        while s.recv(4096):
                            pass
                    except OSError:
                        pass
            await loop.run_in_executor(None, talk)
            await asyncio.sleep(0.3)
    print(f"wrote {out / name} ({(out / name).stat().st_size} bytes)")


async def main_async(out: Path) -> None:
    from asyncua import ua
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
    with tempfile.TemporaryDirectory() as td:
        keydir = Path(td)
        make_pki(out / "opcua-certs", keydir)
        await scenario("opcua-none-anonymous.pcap", 4840, keydir, out, fault=True)
        await scenario("opcua-none-username.pcap", 48401, keydir, out, users=True,
                       user=("operator", "s3cret-Passw0rd"))
        await scenario("opcua-sign.pcap", 4840, keydir, out, secure=True, policy=SecurityPolicyBasic256Sha256,
                       mode=ua.MessageSecurityMode.Sign)
        await scenario("opcua-encrypt.pcap", 4840, keydir, out, secure=True, policy=SecurityPolicyBasic256Sha256,
                       mode=ua.MessageSecurityMode.SignAndEncrypt)
        await scenario("opcua-chunked.pcap", 4840, keydir, out, small_chunks=True, chunked=True)
        await err_scenario(4840, keydir, out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE), help="output directory (default: pcaps/)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root for tcpdump on lo", file=sys.stderr)
        return 2
    asyncio.run(main_async(Path(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
