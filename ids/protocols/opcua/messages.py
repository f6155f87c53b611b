"""OPC UA typed records: one `OpcuaEvent` per exchange (dataset `otids.opcua`). The session builds them;
detectors read their fields; `to_doc()` hands the ECS rendering to ecs.py (fields.yml beside this file).
"""
from __future__ import annotations

from operator import itemgetter
from typing import NamedTuple

from ...events import FlowContext
from . import ecs as _ecs


class OpcuaEvent(NamedTuple):
    """One OPC UA Binary exchange (dataset `otids.opcua`): a service request with its response (paired by
    request handle), a secure-channel open (OPN pair) or close (CLO), the HEL/ACK handshake, an ERR, a
    ReverseHello, or one message that cannot be read because the channel encrypts it (`encrypted`).

    Emitted when the response arrives, or without one (anomaly unanswered_request) on timeout or flow
    end. `request` / `response` hold the service parameters otids decodes (documented in
    ids/data/fields/opcua.yml); `certificates` maps a role (client, server, user) to the decoded
    certificate (ECS x509 + hash). Secrets (passwords, token data, nonces, authentication tokens) are
    never stored here.
    """

    ts: int  # request time (message time for one-way messages)
    flow: FlowContext
    message_type: str  # HEL, OPN, MSG, CLO, ERR, RHE
    service: str  # Part 4 service name (Read, CreateSession, OpenSecureChannel ...), Hello, Error, ...
    secure_channel_id: int | None
    token_id: int | None
    request_id: int | None
    request_handle: int | None
    security_policy_uri: str | None
    security_mode: str | None  # None | Sign | SignAndEncrypt (inferred when the OPN is encrypted)
    encrypted: bool
    status_code: int | None
    status: str | None
    nodes: tuple[str, ...]
    endpoint_url: str | None
    application_uri: str | None
    user_token_type: str | None
    request: dict | None
    response: dict | None
    certificates: dict | None
    anomalies: tuple[str, ...]
    response_ts: int | None

    dataset = "otids.opcua"
    protocol = "opcua"

    @property
    def action(self) -> str:
        s = self.service
        out = [s[0].lower()] if s else []
        for ch in s[1:]:
            if ch.isupper() and out and out[-1] != "_":
                out.append("_")
            out.append(ch.lower())
        return "".join(out).replace("-", "_")

    label = property(itemgetter(3))  # service: what the run summary counts

    @property
    def outcome(self) -> str:
        if self.status_code is not None:
            return "failure" if self.status_code & 0x80000000 else "success"
        if self.response is None and self.request is not None and self.message_type in ("MSG", "OPN", "HEL"):
            return "unknown"
        return "failure" if self.anomalies else "success"

    def to_doc(self) -> dict:
        return _ecs.event_doc(self)
