"""Modbus/TCP anomaly catalogue: the anomaly names the parser and session put on transactions, the alerts
they raise, and the checks beyond one name per alert (malformed names grouped into one alert, floods of
exceptions and of unanswered requests). Read by ids.detect.anomaly; thresholds come from the `anomaly` config.
"""
from __future__ import annotations

from ...detect.api import RuleInfo
from ...flow.budget import trim_oldest
from ..spec import AnomalyCatalogue

NS = 1_000_000_000
MAX_KEYS = 50_000  # bound on tracked (client, server) pairs; the oldest are forgotten first

#: Names that make a PDU malformed: one alert per transaction lists them all.
MALFORMED = frozenset(("malformed_mbap", "malformed_pdu", "byte_count_mismatch", "quantity_out_of_range",
                       "invalid_coil_value", "exception_in_request", "function_code_mismatch",
                       "response_mismatch", "invalid_device_id_code"))

#: Every name the Modbus parser and session emit; those not alerted here are facts on the event (values cut,
#: framing oddities the session recovered from) or are alerted by the floods.
KNOWN = MALFORMED | frozenset(("unsolicited_response", "unanswered_request", "values_truncated", "bad_length",
                               "bad_protocol_id", "duplicate_transaction_id", "too_many_pending",
                               "unit_id_mismatch"))

RULES = (
    RuleInfo("otids.anomaly.modbus.malformed", "Malformed Modbus PDU", "medium",
             "A Modbus frame or PDU violates the specification (bad MBAP header, wrong length or byte count, "
             "out-of-range quantity, invalid coil value). Fuzzing, exploitation attempts and broken devices "
             "produce these.", ("T0866",)),
    RuleInfo("otids.anomaly.modbus.unsolicited_response", "Unsolicited Modbus response", "medium",
             "A slave sent a response whose transaction id matches no outstanding request: spoofed or "
             "injected replies, or a capture that started mid-exchange.", ("T0856",)),
    RuleInfo("otids.anomaly.modbus.exception_flood", "Modbus exception flood", "high",
             "Many exception responses from one slave to one master in a short window, and a large share "
             "of their transactions: function-code, address or unit-id scanning, or a master driving a "
             "device into errors.", ("T0846", "T0888")),
    RuleInfo("otids.anomaly.modbus.unanswered_flood", "Modbus unanswered-request flood", "high",
             "Many requests without response from one master to one slave in a short window: a request "
             "flood, probing of absent units, or a device that stopped answering.", ("T0814",)),
)


class ModbusChecker:
    """Per-detector state: the exception share per (master, slave) in tumbling windows."""

    __slots__ = ("det", "cfg", "exc", "exc_window")

    def __init__(self, det):
        self.det = det
        self.cfg = det.cfg
        self.exc: dict[tuple, list] = {}  # (client, server) -> [window start, transactions, exceptions]
        self.exc_window = det.cfg.exception_flood_window * NS

    def __call__(self, ev):
        det = self.det
        out = None
        an = ev.anomalies
        if an:
            bad = [a for a in an if a in MALFORMED]
            if bad:
                out = det.fire("otids.anomaly.modbus.malformed", ev, ev.ts,
                               f"malformed Modbus {ev.function} from {ev.flow.client_ip} to {ev.flow.server_ip}: "
                               f"{', '.join(bad)}")
            if "unsolicited_response" in an:
                r = det.fire("otids.anomaly.modbus.unsolicited_response", ev, ev.response_ts or ev.ts,
                             f"response to transaction {ev.transaction_id} ({ev.function}) from "
                             f"{ev.flow.server_ip} with no matching request")
                out = (out or []) + (r or [])
            if "unanswered_request" in an:
                r = det.flood(ev, self.cfg.unanswered_flood_count, self.cfg.unanswered_flood_window,
                              "otids.anomaly.modbus.unanswered_flood", "requests without response")
                out = (out or []) + (r or [])
        # Exception share per (master, slave) in tumbling windows: one dict update per transaction.
        f = ev.flow
        key = (f.client_ip, f.server_ip)
        w = self.exc.get(key)
        ts = ev.ts
        if w is None or ts - w[0] > self.exc_window:
            if w is None and len(self.exc) >= MAX_KEYS:
                trim_oldest(self.exc, MAX_KEYS)
            w = self.exc[key] = [ts, 0, 0]
        w[1] += 1
        if ev.exception_code is not None:
            w[2] += 1
            cfg = self.cfg
            if w[2] >= cfg.exception_flood_count and w[2] >= cfg.exception_flood_ratio * w[1]:
                n, total = w[2], w[1]
                self.exc[key] = [ts, 0, 0]
                r = det.fire("otids.anomaly.modbus.exception_flood", ev, ts,
                             f"{n} exception responses in {total} transactions from {f.server_ip} to "
                             f"{f.client_ip} within {cfg.exception_flood_window} s", count=n)
                if r:
                    out = (out or []) + r
        return out


ANOMALIES = AnomalyCatalogue(title="Modbus", rules=RULES, known=KNOWN, checker=ModbusChecker)
