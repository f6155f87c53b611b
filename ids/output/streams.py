"""Names of the data streams otids writes (`logs-<dataset>-<namespace>`): one place for the generator of the
cluster files (esgen.py) and the Elastic Security rules (secrules.py), which both point at them."""

ALERT_STREAM_PREFIX = "logs-otids.alert"
