"""OPC UA constants with the specification section each comes from (OPC 10000-4 Services, OPC 10000-6
Mappings, OPC 10000-7 Profiles). The large generated tables (services, encodings, status codes) are in
tables.py; this module adds the small enums and the name functions with their `unknown-N` fallbacks.
"""
from __future__ import annotations

from enum import IntEnum

from .tables import ENCODINGS, SERVICE_FAULT, SERVICE_REQUESTS, SERVICE_RESPONSES, STATUS_CODES

__all__ = ["ENCODINGS", "SERVICE_FAULT", "SERVICE_REQUESTS", "SERVICE_RESPONSES", "STATUS_CODES"]

#: Transport message types (OPC 10000-6 section 7.1.2.2, 6.7.2.2): 3 ASCII bytes.
MESSAGE_TYPES = frozenset((b"HEL", b"ACK", b"ERR", b"RHE", b"OPN", b"MSG", b"CLO"))
#: Chunk types (6.7.2.2): C intermediate, F final, A abort.
CHUNK_TYPES = frozenset((b"C", b"F", b"A"))

#: Size limits from the specification: HEL/ERR strings at most 4096 bytes (7.1.2.3, 7.1.2.5),
#: SecurityPolicyUri at most 255 bytes (6.7.2.3); buffers at least 8192 bytes (7.1.2.3).
MAX_URL = 4096
MAX_POLICY_URI = 255
MIN_BUFFER = 8192


class MessageSecurityMode(IntEnum):
    """OPC 10000-4 section 7.20."""

    INVALID = 0
    NONE = 1
    SIGN = 2
    SIGN_AND_ENCRYPT = 3


SECURITY_MODE_NAMES = {0: "Invalid", 1: "None", 2: "Sign", 3: "SignAndEncrypt"}


class SecurityTokenRequestType(IntEnum):
    """OPC 10000-4 section 5.5.2.2."""

    ISSUE = 0
    RENEW = 1


TOKEN_REQUEST_NAMES = {0: "issue", 1: "renew"}


class UserTokenType(IntEnum):
    """OPC 10000-4 section 7.42 (UserTokenPolicy.tokenType)."""

    ANONYMOUS = 0
    USERNAME = 1
    CERTIFICATE = 2
    ISSUED_TOKEN = 3


USER_TOKEN_TYPE_NAMES = {0: "Anonymous", 1: "UserName", 2: "Certificate", 3: "IssuedToken"}

#: ActivateSession userIdentityToken ExtensionObject encoding ids (4: 7.41) -> token type name.
IDENTITY_TOKENS = {321: "Anonymous", 324: "UserName", 327: "X509", 940: "Issued"}

APPLICATION_TYPE_NAMES = {0: "Server", 1: "Client", 2: "ClientAndServer", 3: "DiscoveryServer"}

#: Node attribute ids (OPC 10000-6 Annex A.1).
ATTRIBUTE_NAMES = {
    1: "NodeId", 2: "NodeClass", 3: "BrowseName", 4: "DisplayName", 5: "Description", 6: "WriteMask",
    7: "UserWriteMask", 8: "IsAbstract", 9: "Symmetric", 10: "InverseName", 11: "ContainsNoLoops",
    12: "EventNotifier", 13: "Value", 14: "DataType", 15: "ValueRank", 16: "ArrayDimensions",
    17: "AccessLevel", 18: "UserAccessLevel", 19: "MinimumSamplingInterval", 20: "Historizing",
    21: "Executable", 22: "UserExecutable", 23: "DataTypeDefinition", 24: "RolePermissions",
    25: "UserRolePermissions", 26: "AccessRestrictions", 27: "AccessLevelEx",
}

BROWSE_DIRECTIONS = {0: "Forward", 1: "Inverse", 2: "Both", 3: "Invalid"}
TIMESTAMPS_TO_RETURN = {0: "Source", 1: "Server", 2: "Both", 3: "Neither", 4: "Invalid"}
MONITORING_MODES = {0: "Disabled", 1: "Sampling", 2: "Reporting"}


class BuiltinType(IntEnum):
    """Built-in data types (OPC 10000-6 section 5.1.2, table 1); the Variant type id."""

    BOOLEAN = 1
    SBYTE = 2
    BYTE = 3
    INT16 = 4
    UINT16 = 5
    INT32 = 6
    UINT32 = 7
    INT64 = 8
    UINT64 = 9
    FLOAT = 10
    DOUBLE = 11
    STRING = 12
    DATETIME = 13
    GUID = 14
    BYTESTRING = 15
    XMLELEMENT = 16
    NODEID = 17
    EXPANDEDNODEID = 18
    STATUSCODE = 19
    QUALIFIEDNAME = 20
    LOCALIZEDTEXT = 21
    EXTENSIONOBJECT = 22
    DATAVALUE = 23
    VARIANT = 24
    DIAGNOSTICINFO = 25


BUILTIN_NAMES = {1: "Boolean", 2: "SByte", 3: "Byte", 4: "Int16", 5: "UInt16", 6: "Int32", 7: "UInt32",
                 8: "Int64", 9: "UInt64", 10: "Float", 11: "Double", 12: "String", 13: "DateTime",
                 14: "Guid", 15: "ByteString", 16: "XmlElement", 17: "NodeId", 18: "ExpandedNodeId",
                 19: "StatusCode", 20: "QualifiedName", 21: "LocalizedText", 22: "ExtensionObject",
                 23: "DataValue", 24: "Variant", 25: "DiagnosticInfo"}

#: Security policies (OPC 10000-7, "SecurityPolicy" profiles): URI -> short name, and the size of the
#: symmetric signature each appends to a signed chunk (HMAC-SHA1 20 bytes, HMAC-SHA256 32 bytes).
POLICY_PREFIX = "http://opcfoundation.org/UA/SecurityPolicy#"
SECURITY_POLICIES = {
    POLICY_PREFIX + "None": "None",
    POLICY_PREFIX + "Basic128Rsa15": "Basic128Rsa15",
    POLICY_PREFIX + "Basic256": "Basic256",
    POLICY_PREFIX + "Basic256Sha256": "Basic256Sha256",
    POLICY_PREFIX + "Aes128_Sha256_RsaOaep": "Aes128_Sha256_RsaOaep",
    POLICY_PREFIX + "Aes256_Sha256_RsaPss": "Aes256_Sha256_RsaPss",
}
SIGNATURE_SIZES = {"Basic128Rsa15": 20, "Basic256": 20, "Basic256Sha256": 32, "Aes128_Sha256_RsaOaep": 32,
                   "Aes256_Sha256_RsaPss": 32}
#: Policies deprecated by the OPC Foundation (SHA-1 signatures; OPC 10000-7 v1.04 marks them deprecated).
DEPRECATED_POLICIES = frozenset(("Basic128Rsa15", "Basic256"))


def policy_name(uri: str | None) -> str | None:
    if uri is None:
        return None
    name = SECURITY_POLICIES.get(uri)
    if name is not None:
        return name
    return uri.rsplit("#", 1)[-1] if "#" in uri else f"unknown-{uri}"


def service_name(type_id: int) -> str:
    """Name of the service whose request or response is encoded as ns=0;i=type_id."""
    return SERVICE_REQUESTS.get(type_id) or SERVICE_RESPONSES.get(type_id) or \
        ("ServiceFault" if type_id == SERVICE_FAULT else f"unknown-{type_id}")


_SEVERITY = {0: "Good", 1: "Uncertain", 2: "Bad", 3: "Bad"}


def status_name(code: int) -> str:
    """Symbolic name of a StatusCode (7.39): the low 16 bits are flags (info type, limits, overflow), so
    the name comes from the high 16; an unknown sub-code is named by its severity, e.g. Bad-0x81230000."""
    name = STATUS_CODES.get(code)
    if name is not None:
        return name
    name = STATUS_CODES.get(code & 0xFFFF0000)
    if name is not None:
        return name
    return f"{_SEVERITY[code >> 30]}-0x{code & 0xFFFF0000:08X}"


def status_severity(code: int) -> str:
    return _SEVERITY[code >> 30]


def attribute_name(aid: int) -> str:
    return ATTRIBUTE_NAMES.get(aid, f"unknown-{aid}")


def encoding_name(type_id: int) -> str:
    return ENCODINGS.get(type_id, f"unknown-{type_id}")
