#!/usr/bin/env python3
"""Record ``pcaps/modbus-demo.pcap``: a small Modbus/TCP demo capture from real traffic.

Why: otids needs a reproducible, license-clean capture to exercise its Modbus
parser, asset inventory, function-code rules and port-independent protocol
detection. Instead of hand-crafting packets, this script runs genuine pymodbus
(3.16) servers and clients on loopback and records them with tcpdump, so the
TCP handshakes, segmentation, timing and teardowns are real.

What it records (all on ``lo``, classic pcap, default snaplen):

* PLC ``127.0.0.2:502`` (pymodbus ModbusTcpServer, device id 1, with a
  ModbusDeviceIdentification: VendorName "otids demo", ProductCode "OTD-PLC",
  MajorMinorRevision "1.0", ...).
* HMI ``127.0.0.10`` polling the PLC three times: FC1, FC2, FC3, FC4.
* Engineering workstation ``127.0.0.20``: FC5, FC6, FC15, FC16, FC22, FC23,
  FC8/0 (return query data), FC17 (report server id), FC43/14 (read device
  identification, basic and regular), then three exception responses: FC3 at an
  address outside the datastore (exception 2, illegal data address) and a
  user-defined function code 65 (0x41) the PLC does not implement
  (exception 1, illegal function), plus FC43 with MEI type 13 (CANopen
  general reference), which pymodbus rejects with exception 1.
* A second server ``127.0.0.3:5020`` (non-standard port) read by the HMI with
  FC3 and FC4, for content-probing protocol detection
  (decode with ``tshark -d tcp.port==5020,mbtcp``).

Usage (root, needs tcpdump)::

    python3 pcaps/make_modbus_demo.py [OUT.pcap]   # default pcaps/modbus-demo.pcap
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when a test loads this file by path
from tcpdump_lo import start_tcpdump, stop_tcpdump  # noqa: E402  the generators' one tcpdump helper

PLC = ("127.0.0.2", 502)
PLC_ALT = ("127.0.0.3", 5020)
HMI_IP = "127.0.0.10"
EWS_IP = "127.0.0.20"
BPF = f"tcp port {PLC[1]} or tcp port {PLC_ALT[1]}"
DEFAULT_OUT = Path(__file__).resolve().parent / "modbus-demo.pcap"


def die(msg: str) -> None:
    print(f"make_modbus_demo: error: {msg}", file=sys.stderr)
    sys.exit(1)


def count_pcap_packets(path: Path) -> int:
    data = path.read_bytes()
    if len(data) < 24:
        return 0
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        die(f"{path} is not a classic pcap file")
    off, count = 24, 0
    while off + 16 <= len(data):
        incl_len = struct.unpack_from(endian + "I", data, off + 8)[0]
        off += 16 + incl_len
        count += 1
    return count


# --------------------------------------------------------------------------- #
# Modbus traffic (pymodbus 3.16 API)
# --------------------------------------------------------------------------- #
def build_servers():
    from pymodbus.pdu.device import ModbusDeviceIdentification
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    identity = ModbusDeviceIdentification(
        info_name={
            "VendorName": "otids demo",
            "ProductCode": "OTD-PLC",
            "MajorMinorRevision": "1.0",
            "VendorUrl": "https://example.com/otids",
            "ProductName": "otids demo PLC",
            "ModelName": "OTD-PLC-1",
            "UserApplicationName": "tank farm demo",
        }
    )

    def device(seed: int) -> SimDevice:
        # Separate (non-shared) blocks: coils, discrete inputs, holding, input.
        # Addresses 0..99 exist; anything else yields exception 2.
        return SimDevice(
            id=1,
            simdata=(
                [SimData(0, values=[bool((i + seed) % 3 == 0) for i in range(96)],
                         datatype=DataType.BITS)],
                [SimData(0, values=[bool((i + seed) % 2) for i in range(96)],
                         datatype=DataType.BITS)],
                [SimData(0, values=[(seed * 100 + i) & 0xFFFF for i in range(100)],
                         datatype=DataType.REGISTERS)],
                [SimData(0, values=[(seed * 1000 + 7 * i) & 0xFFFF for i in range(100)],
                         datatype=DataType.REGISTERS)],
            ),
        )

    # Note: pymodbus keeps identity in a process-wide ModbusControlBlock, so
    # only the main PLC is given one (the alt server would see it too).
    plc = ModbusTcpServer(device(1), address=PLC, identity=identity,
                          custom_pdu=[user_function_65()])
    alt = ModbusTcpServer(device(2), address=PLC_ALT)
    return plc, alt


def user_function_65():
    """PDU class for user-defined function code 65 (0x41), which the PLC rejects.

    pymodbus 3.16 answers a function code it cannot decode with an exception
    whose function field is 0x80 (the request's code is lost), unlike a real
    PLC, which echoes ``code | 0x80``.  So the server registers this class via
    ``custom_pdu`` and rejects it with ILLEGAL_FUNCTION, giving ``0xC1 0x01``.
    """
    from pymodbus.constants import ExcCodes
    from pymodbus.pdu import ExceptionResponse, ModbusPDU

    class UserFunction65(ModbusPDU):
        function_code = 0x41
        rtu_frame_size = 6

        def encode(self) -> bytes:
            return b"\x00\x01"

        def decode(self, data: bytes) -> None:
            pass

        async def datastore_update(self, context, device_id):
            return ExceptionResponse(self.function_code, ExcCodes.ILLEGAL_FUNCTION)

    return UserFunction65


def canopen_mei_request(dev_id: int):
    """FC43 with MEI type 13 (CANopen general reference): pymodbus rejects it
    natively with ILLEGAL_FUNCTION (``0xAB 0x01``)."""
    from pymodbus.pdu import ModbusPDU

    class CanopenGeneralReference(ModbusPDU):
        function_code = 0x2B
        sub_function_code = 0x0D

        def encode(self) -> bytes:
            return b"\x0d\x00\x00"

    return CanopenGeneralReference(dev_id=dev_id)


async def make_client(src_ip: str, target: tuple[str, int]):
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient(
        target[0], port=target[1], source_address=(src_ip, 0), timeout=2, retries=0
    )
    if not await client.connect():
        raise RuntimeError(f"{src_ip} could not connect to {target[0]}:{target[1]}")
    return client


async def close_client(client) -> None:
    client.close()
    await asyncio.sleep(0.2)  # FIN / FIN-ACK exchange


def expect(resp, what: str, error: bool = False) -> None:
    if resp.isError() != error:
        raise RuntimeError(f"unexpected result for {what}: {resp}")


async def hmi_poll(cycles: int = 3) -> None:
    c = await make_client(HMI_IP, PLC)
    for _ in range(cycles):
        expect(await c.read_coils(0, count=16, device_id=1), "FC1")
        expect(await c.read_discrete_inputs(0, count=16, device_id=1), "FC2")
        expect(await c.read_holding_registers(0, count=10, device_id=1), "FC3")
        expect(await c.read_input_registers(0, count=8, device_id=1), "FC4")
        await asyncio.sleep(0.25)
    await close_client(c)


async def ews_session() -> None:
    c = await make_client(EWS_IP, PLC)
    d = {"device_id": 1}
    expect(await c.write_coil(3, True, **d), "FC5")
    expect(await c.write_register(10, 1234, **d), "FC6")
    expect(await c.write_coils(16, [True, False, True, True, False, False, True, False], **d), "FC15")
    expect(await c.write_registers(20, [100, 200, 300, 400], **d), "FC16")
    expect(await c.mask_write_register(address=10, and_mask=0x00F2, or_mask=0x0025, **d), "FC22")
    expect(await c.readwrite_registers(read_address=20, read_count=4, write_address=30,
                                       values=[7, 8, 9], **d), "FC23")
    expect(await c.diag_query_data(b"\xa5\x37", **d), "FC8/0")
    expect(await c.report_device_id(**d), "FC17")
    expect(await c.read_device_information(read_code=0x01, object_id=0x00, **d), "FC43/14 basic")
    expect(await c.read_device_information(read_code=0x02, object_id=0x00, **d), "FC43/14 regular")
    # Exceptions
    expect(await c.read_holding_registers(1000, count=2, **d), "FC3 @1000", error=True)
    expect(await c.execute(False, user_function_65()(dev_id=1)), "FC65", error=True)
    expect(await c.execute(False, canopen_mei_request(1)), "FC43/13", error=True)
    await close_client(c)


async def alt_port_reads() -> None:
    c = await make_client(HMI_IP, PLC_ALT)
    expect(await c.read_holding_registers(0, count=4, device_id=1), "alt FC3")
    await asyncio.sleep(0.1)
    expect(await c.read_input_registers(0, count=4, device_id=1), "alt FC4")
    await close_client(c)


async def run_traffic() -> None:
    plc, alt = build_servers()
    await plc.serve_forever(background=True)
    await alt.serve_forever(background=True)
    try:
        await hmi_poll()
        await asyncio.sleep(0.2)
        await ews_session()
        await asyncio.sleep(0.2)
        await alt_port_reads()
        await asyncio.sleep(0.3)
    finally:
        await plc.shutdown()
        await alt.shutdown()
        await asyncio.sleep(0.1)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    if shutil.which("tcpdump") is None:
        die("tcpdump not found in PATH (apt-get install tcpdump)")
    if os.geteuid() != 0:
        die("must run as root to capture on lo with tcpdump")
    try:
        import pymodbus  # noqa: F401
    except ImportError:
        die("pymodbus not installed (pip install 'pymodbus>=3.16')")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    out.parent.mkdir(parents=True, exist_ok=True)

    proc = start_tcpdump(out, BPF)
    try:
        asyncio.run(run_traffic())
    except BaseException:
        stop_tcpdump(proc)
        raise
    err = stop_tcpdump(proc)
    if proc.returncode not in (0, -signal.SIGINT):
        die(f"tcpdump failed (rc={proc.returncode}): {err.strip()}")
    dropped = next((ln for ln in err.splitlines() if "dropped by kernel" in ln), "")
    print(f"wrote {out}: {count_pcap_packets(out)} packets, {out.stat().st_size} bytes"
          + (f" ({dropped.strip()})" if dropped else ""))


if __name__ == "__main__":
    main()
