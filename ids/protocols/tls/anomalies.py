"""TLS anomaly catalogue: one alert per anomaly name on a handshake that has a rule. Read by
ids.detect.anomaly.
"""
from __future__ import annotations

from ...detect.api import RuleInfo
from ..spec import AnomalyCatalogue
from .consts import CERTIFICATES_TRUNCATED, HANDSHAKE_TOO_LARGE, MALFORMED_HANDSHAKE, MALFORMED_RECORD

RULES = (
    RuleInfo("otids.anomaly.tls.malformed", "Malformed TLS handshake", "medium",
             "A record or handshake message that is not valid TLS on a flow that started as TLS: fuzzing, "
             "exploitation attempts against TLS stacks, or a non-TLS protocol tunnelled on a TLS port.", ("T0866",)),
    RuleInfo("otids.anomaly.tls.handshake_too_large", "TLS handshake message over the size limit", "low",
             "A handshake message longer than tls.max_handshake_bytes (huge certificate chains or extensions): "
             "its content was not inspected."),
)
NAMED = {MALFORMED_RECORD: "otids.anomaly.tls.malformed", MALFORMED_HANDSHAKE: "otids.anomaly.tls.malformed",
         HANDSHAKE_TOO_LARGE: "otids.anomaly.tls.handshake_too_large"}

#: certificates_truncated (more certificates than tls.max_certificates) is a fact on the event, not an alert.
ANOMALIES = AnomalyCatalogue(title="TLS", rules=RULES, known=frozenset(NAMED) | {CERTIFICATES_TRUNCATED},
                             named=NAMED)
