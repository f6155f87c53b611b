"""Sparkplug B (Eclipse Sparkplug 3.0.0, and 2.2's STATE/<host> text form) over MQTT: topic namespace and
protobuf payload decoding (decode.py, schema compiled into sparkplug_b_pb2 by tools/gen_sparkplug_pb2.sh),
aliases from births (births.py), the document object (ecs.py), per-edge-node checks (detector.py)."""
