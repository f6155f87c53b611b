"""OPC UA anomaly catalogue: the anomaly names the parser and session put on exchanges, grouped into the
alerts they raise (malformed, chunk limits, sequence numbers, unsolicited responses, unanswered floods).
Read by ids.detect.anomaly; thresholds come from the `anomaly` config.
"""
from __future__ import annotations

from ...detect.api import RuleInfo
from ..spec import AnomalyCatalogue

MALFORMED = frozenset(("malformed_message", "malformed_body", "depth_limit", "unknown_service",
                       "request_from_server", "response_from_client", "malformed_identity_token",
                       "service_mismatch", "request_id_mismatch", "buffer_size_below_minimum"))
CHUNK = frozenset(("chunk_cap_hit", "chunk_limit_exceeded"))
SEQUENCE = frozenset(("sequence_gap", "sequence_replay"))
UNSOLICITED = frozenset(("unsolicited_response",))

#: Every name the OPC UA parser and session emit. Not alerted here: the decoder's detail next to
#: malformed_message (truncated, negative_length, ...), trailing bytes, aborted or incomplete messages, bounds hit, and
#: thumbprint_mismatch, which the auth detector alerts with the certificate and both thumbprints.
KNOWN = MALFORMED | CHUNK | SEQUENCE | UNSOLICITED | frozenset((
    "unanswered_request", "thumbprint_mismatch", "trailing_bytes", "aborted", "incomplete_message",
    "truncated", "negative_length", "length_too_large", "array_length_exceeds_message", "bad_variant_type",
    "bad_nodeid_encoding", "bad_extension_object_encoding", "no_progress", "tcp_gap", "too_many_partial_messages",
    "too_many_pending", "duplicate_request_handle", "lost", "dropped",
    "reassembly_memory_cap"))  # with chunk_cap_hit; the memory_cap notice alerts the pool (limits.reassembly_total)

RULES = (
    RuleInfo("otids.anomaly.opcua.malformed", "Malformed OPC UA message", "medium",
             "An OPC UA Binary message violates OPC 10000-6: bad transport header, impossible length, "
             "undecodable service body, nesting beyond the depth limit, a request sent by the server. Fuzzing "
             "and exploitation attempts against OPC UA stacks produce these.", ("T0866",)),
    RuleInfo("otids.anomaly.opcua.chunk_cap", "OPC UA chunk limit exceeded", "high",
             "A chunked OPC UA message exceeded the limits negotiated in HEL/ACK or otids's own reassembly cap "
             "(or one chunk exceeded the chunk-size cap): resource-exhaustion attempts against a server or "
             "client. The message was not kept beyond the cap.", ("T0814",)),
    RuleInfo("otids.anomaly.opcua.sequence", "OPC UA sequence number gap or replay", "medium",
             "On a secure channel whose headers are readable, a SequenceNumber did not follow the previous one "
             "(OPC 10000-6 6.7.2.4): a replayed or injected message, or a message removed in transit.",
             ("T0830", "T0855")),
    RuleInfo("otids.anomaly.opcua.unsolicited_response", "Unsolicited OPC UA response", "medium",
             "A response whose request handle matches no outstanding request: injected responses, or a capture "
             "that started mid-exchange.", ("T0856",)),
    RuleInfo("otids.anomaly.opcua.unanswered_flood", "OPC UA unanswered-request flood", "high",
             "Many OPC UA requests without response from one client to one server in a short window (Publish "
             "requests, which servers legitimately hold, are not counted).", ("T0814",)),
)


def checker(det):
    cfg = det.cfg

    def check(ev):
        an = ev.anomalies
        if not an:
            return None
        out: list = []
        f = ev.flow
        pair = f"{f.client_ip} to {f.server_ip}"
        checks = (
            (MALFORMED, "otids.anomaly.opcua.malformed", "malformed OPC UA {svc} from " + pair),
            (CHUNK, "otids.anomaly.opcua.chunk_cap", "OPC UA {svc} message over the chunk limits, " + pair),
            (SEQUENCE, "otids.anomaly.opcua.sequence", "OPC UA sequence number anomaly on channel "
                                                       f"{ev.secure_channel_id}, " + pair),
            (UNSOLICITED, "otids.anomaly.opcua.unsolicited_response",
             "OPC UA {svc} response with no matching request, " + pair),
        )
        for names, rid, text in checks:
            hit = [a for a in an if a in names]
            if hit:
                r = det.fire(rid, ev, ev.ts, text.format(svc=ev.service) + f": {', '.join(hit)}")
                if r:
                    out += r
        if "unanswered_request" in an and ev.service != "Publish":
            r = det.flood(ev, cfg.unanswered_flood_count, cfg.unanswered_flood_window,
                          "otids.anomaly.opcua.unanswered_flood", "OPC UA requests without response")
            if r:
                out += r
        return out or None

    return check


ANOMALIES = AnomalyCatalogue(title="OPC UA", rules=RULES, known=KNOWN, checker=checker)
