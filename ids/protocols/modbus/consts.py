"""Modbus constants, with the specification section each comes from.

Every table has an explicit fallback (`function_name`, `exception_name`, ...) so an unknown value is
named `unknown-N` rather than dropped.
"""
from __future__ import annotations

from enum import IntEnum


class FunctionCode(IntEnum):
    """Public function codes (MB Application Protocol v1.1b3, section 5.1 and 6)."""

    READ_COILS = 1  # 6.1
    READ_DISCRETE_INPUTS = 2  # 6.2
    READ_HOLDING_REGISTERS = 3  # 6.3
    READ_INPUT_REGISTERS = 4  # 6.4
    WRITE_SINGLE_COIL = 5  # 6.5
    WRITE_SINGLE_REGISTER = 6  # 6.6
    READ_EXCEPTION_STATUS = 7  # 6.7 (serial line only)
    DIAGNOSTICS = 8  # 6.8 (serial line only)
    GET_COMM_EVENT_COUNTER = 11  # 6.9
    GET_COMM_EVENT_LOG = 12  # 6.10
    WRITE_MULTIPLE_COILS = 15  # 6.11
    WRITE_MULTIPLE_REGISTERS = 16  # 6.12
    REPORT_SERVER_ID = 17  # 6.13
    READ_FILE_RECORD = 20  # 6.14
    WRITE_FILE_RECORD = 21  # 6.15
    MASK_WRITE_REGISTER = 22  # 6.16
    READ_WRITE_MULTIPLE_REGISTERS = 23  # 6.17
    READ_FIFO_QUEUE = 24  # 6.18
    ENCAPSULATED_INTERFACE_TRANSPORT = 43  # 6.19-6.21


FUNCTION_NAMES = {int(f): f.name.lower() for f in FunctionCode}

#: User-defined function codes (section 5.1: 65-72 and 100-110).
USER_DEFINED = frozenset(range(65, 73)) | frozenset(range(100, 111))
#: Codes the spec reserves for legacy products (section 5.1, Annex A).
RESERVED = frozenset((9, 10, 13, 14, 41, 42, 90, 91, 125, 126, 127))
#: Vendor codes recognised by name. 90: Schneider Electric UMAS (Unity/EcoStruxure engineering protocol).
VENDOR = {90: "schneider_umas"}

#: Codes whose request writes to the device (data or configuration).
WRITE_CODES = frozenset((5, 6, 15, 16, 21, 22, 23))


def function_name(fc: int, mei: int | None = None) -> str:
    if fc == 43:
        if mei == 14:
            return "read_device_identification"
        if mei == 13:
            return "canopen_general_reference"
    name = FUNCTION_NAMES.get(fc)
    if name:
        return name
    if fc in VENDOR:
        return VENDOR[fc]
    if fc in USER_DEFINED:
        return f"user_defined_{fc}"
    if fc in RESERVED:
        return f"reserved_{fc}"
    return f"unknown-{fc}"


def function_class(fc: int) -> str:
    """public (assigned) | user | reserved | unassigned, the classes Suricata's `modbus: function` uses."""
    if fc in FUNCTION_NAMES:
        return "public"
    if fc in USER_DEFINED:
        return "user"
    if fc in RESERVED:
        return "reserved"
    return "unassigned"


class ExceptionCode(IntEnum):
    """Exception codes (section 7)."""

    ILLEGAL_FUNCTION = 1
    ILLEGAL_DATA_ADDRESS = 2
    ILLEGAL_DATA_VALUE = 3
    SERVER_DEVICE_FAILURE = 4
    ACKNOWLEDGE = 5
    SERVER_DEVICE_BUSY = 6
    NEGATIVE_ACKNOWLEDGE = 7  # legacy (Modicon), not in v1.1b3 but seen in the field
    MEMORY_PARITY_ERROR = 8
    GATEWAY_PATH_UNAVAILABLE = 10
    GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND = 11


EXCEPTION_NAMES = {int(e): e.name.lower() for e in ExceptionCode}


def exception_name(code: int) -> str:
    return EXCEPTION_NAMES.get(code, f"unknown-{code}")


class DiagnosticSubFunction(IntEnum):
    """FC 8 sub-function codes (section 6.8.1)."""

    RETURN_QUERY_DATA = 0
    RESTART_COMMUNICATIONS_OPTION = 1
    RETURN_DIAGNOSTIC_REGISTER = 2
    CHANGE_ASCII_INPUT_DELIMITER = 3
    FORCE_LISTEN_ONLY_MODE = 4
    CLEAR_COUNTERS_AND_DIAGNOSTIC_REGISTER = 10
    RETURN_BUS_MESSAGE_COUNT = 11
    RETURN_BUS_COMMUNICATION_ERROR_COUNT = 12
    RETURN_BUS_EXCEPTION_ERROR_COUNT = 13
    RETURN_SERVER_MESSAGE_COUNT = 14
    RETURN_SERVER_NO_RESPONSE_COUNT = 15
    RETURN_SERVER_NAK_COUNT = 16
    RETURN_SERVER_BUSY_COUNT = 17
    RETURN_BUS_CHARACTER_OVERRUN_COUNT = 18
    CLEAR_OVERRUN_COUNTER_AND_FLAG = 20


DIAGNOSTIC_NAMES = {int(d): d.name.lower() for d in DiagnosticSubFunction}


def diagnostic_name(sub: int) -> str:
    return DIAGNOSTIC_NAMES.get(sub, f"unknown-{sub}")


class MeiType(IntEnum):
    """FC 43 MEI types (section 6.19)."""

    CANOPEN_GENERAL_REFERENCE = 13
    READ_DEVICE_IDENTIFICATION = 14


#: Read Device Identification object ids (section 6.21, table "Object Id").
DEVICE_ID_OBJECTS = {0: "vendor_name", 1: "product_code", 2: "major_minor_revision", 3: "vendor_url",
                     4: "product_name", 5: "model_name", 6: "user_application_name"}
#: Read Device ID codes (section 6.21): 1 basic, 2 regular, 3 extended (streams), 4 one specific object.
DEVICE_ID_CODES = {1: "basic", 2: "regular", 3: "extended", 4: "specific"}

#: Schneider UMAS sub-function codes (byte 2 of an FC 90 PDU), from public protocol research
#: (e.g. Kaspersky ICS CERT "The secrets of Schneider Electric's UMAS protocol", 2022).
UMAS_FUNCTIONS = {
    0x01: "init_comm", 0x02: "read_id", 0x03: "read_project_info", 0x04: "read_plc_info",
    0x06: "read_card_info", 0x0A: "repeat", 0x10: "take_plc_reservation", 0x11: "release_plc_reservation",
    0x12: "keep_alive", 0x20: "read_memory_block", 0x22: "read_variables", 0x23: "write_variables",
    0x24: "read_coils_registers", 0x25: "write_coils_registers", 0x30: "initialize_upload",
    0x31: "upload_block", 0x32: "end_strategy_upload", 0x33: "initialize_download", 0x34: "download_block",
    0x35: "end_download", 0x39: "read_eth_master_data", 0x40: "start_plc", 0x41: "stop_plc",
    0x50: "monitor_plc", 0x58: "check_plc", 0x70: "read_io_object", 0x71: "write_io_object",
    0x73: "get_status_module", 0xFE: "response_ok", 0xFD: "response_error",
}

#: Quantity limits (sections 6.1-6.4, 6.11, 6.12, 6.17).
MAX_READ_BITS = 2000
MAX_READ_REGISTERS = 125
MAX_WRITE_COILS = 1968
MAX_WRITE_REGISTERS = 123
MAX_RW_WRITE_REGISTERS = 121
#: MBAP length field: unit id + PDU, PDU at most 253 bytes (section 4.1 / TCP guide 3.1.3).
MIN_MBAP_LENGTH = 2  # unit id + function code
MAX_MBAP_LENGTH = 254
#: Longest length field still framed (with anomaly bad_length) once a stream is in sync: vendor stacks send
#: slightly longer PDUs (Schneider UMAS echoes of length 255 in the ITI modicon capture). Anything longer, or
#: any over-long frame before the first valid one, is treated as a broken header.
MAX_TOLERATED_LENGTH = 260
