"""Certificate-based device authentication (docs/AUTH.md): certificate checks (certs.py) against a trust
store, the device registry of expected identities (registry.py), verdicts shared by alerts and audits
(verdicts.py), what is read from OPC UA, MQTT and TLS events (views.py), the detector (detector.py) and the
command line: `otids analyze --registry/--trust-store`, `otids certs` (ids/commands/auth.py)."""
