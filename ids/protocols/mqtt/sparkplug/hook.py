"""The one call the MQTT session makes per PUBLISH and per CONNECT with a will: decode Sparkplug B (and OPC UA
PubSub, ids.protocols.mqtt.pubsub) application payloads into the record's `decoded` slot (SparkplugMessage or PubSubMessage).

The session hands over the whole payload (not the mqtt.string_log_limit head kept for the document), so a
birth of thousands of metrics decodes whole; a will message is only what the CONNECT record kept.
"""
from __future__ import annotations

from .births import births_for

# decode.py (and protobuf with it) loads on the first Sparkplug or PubSub topic, not with every MQTT session.


def wanted(topic: str, head: bytes | None = None) -> bool:
    """Cheap test on the hot path: does this PUBLISH's payload need decoding? Sparkplug and PubSub topics, and
    JSON payloads that name a PubSub message type ("ua-data", ...) on any topic."""
    return topic.startswith("spBv1.0/") or topic.startswith("STATE/") or topic.startswith("opcua/") or \
        (bool(head) and head[:1] == b"{" and b'"ua-' in head)


def annotate(session, msg, payload: bytes):
    """`msg` (MqttPublish) with its decoded application payload, or `msg` unchanged. A decoder bug on hostile
    bytes costs the decoded object (problem decoder_error), never the MQTT record or the run."""
    try:
        return _annotate(session, msg, payload)
    except Exception:  # the protocol boundary: the decoders are written not to raise; this keeps it so
        from .records import SparkplugMessage
        return msg._replace(decoded=SparkplugMessage("unknown", payload_length=len(payload),
                                                     problems=("decoder_error",)))


def _annotate(session, msg, payload: bytes):
    from .decode import decode_payload, is_sparkplug_topic, parse_topic
    topic = msg.topic
    if is_sparkplug_topic(topic):
        head = parse_topic(topic)
        if head is None:
            return msg
        births = births_for(session.sc.run_key)
        births.broker = session.ctx.server_ip
        out = msg._replace(decoded=decode_payload(head, payload, births))
        if births.pool.hits != births.pool.reported:  # BIRTHS_BYTES reached: a memory_cap notice (and alert)
            session.sc.memory_cap(msg.ts, births.pool)
        return out
    from ..pubsub.decode import decode_pubsub
    from ..pubsub.metadata import table_for
    ps = decode_pubsub(topic, payload)
    if ps is None:
        return msg
    meta = table_for(session.sc.run_key)
    out = msg._replace(decoded=meta.apply(session.ctx.server_ip, ps))
    if meta.pool.hits != meta.pool.reported:  # METADATA_BYTES reached: a memory_cap notice (and alert)
        session.sc.memory_cap(msg.ts, meta.pool)
    return out


def annotate_will(session, msg):
    """An MqttConnect whose will is a Sparkplug NDEATH: the will decoded (its bdSeq is what the next NBIRTH
    must carry, 3.0.0 section 7.2)."""
    topic, payload = msg.will_topic, msg.will_message
    if not topic or payload is None or not (topic.startswith("spBv1.0/") or topic.startswith("STATE/")):
        return msg
    from .decode import decode_payload, parse_topic
    head = parse_topic(topic)
    if head is None:
        return msg
    if msg.will_payload_length is not None and msg.will_payload_length > len(payload):
        return msg._replace(decoded=head._replace(problems=head.problems + ("will_truncated",)))
    return msg._replace(decoded=decode_payload(head, payload, None))
