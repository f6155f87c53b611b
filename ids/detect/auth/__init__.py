"""Certificate-based device authentication: certificate checks (certs.py) against a trust store, and a
device registry (registry.py) of expected identities. The detector that consumes OPC UA and MQTT/TLS
events lands with those dissectors."""
