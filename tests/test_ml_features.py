"""ML feature extraction, unit level: the Modbus adapter on crafted transactions, and window features on
hand-made feature views whose expected values are worked out in the comments."""
from __future__ import annotations

import math

import pytest

import ids.detect.ml.adapters  # noqa: F401 - registers each protocol's view (run alone, nothing else imports it)
from ids.protocols.modbus.ml import modbus_view
from ids.detect.ml.features import (NS, ProfileBuilder, Windower, WindowSpec, _window_features,
                                    profiles_from_json)
from ids.detect.ml.view import ADAPTERS, FeatureView, adapter_for, view_of
from ids.events import FlowContext
from ids.protocols.modbus.messages import ModbusRequest, ModbusResponse, ModbusTransaction

FLOW = FlowContext(1, "tcp", "1:x", "10.0.0.1", 40000, None, "10.0.0.2", 502, None, None, False)
T0 = 1_700_000_000 * NS  # a multiple of 10 s


def txn(fc, req=None, resp=None, exc=None, anomalies=(), ts=T0, rts=T0 + 5_000_000, unit=1, fn="f"):
    return ModbusTransaction(ts, FLOW, 1, unit, fc, fn, req, resp, exc, "x" if exc else None, anomalies,
                             rts if (resp is not None or exc is not None) else None)


# ---------------------------------------------------------------------------------------------- adapter

def test_modbus_read_holding_registers_view():
    v = modbus_view(txn(3, ModbusRequest(100, 10), ModbusResponse(quantity=10, values=tuple(range(10))),
                        fn="read_holding_registers"))
    assert (v.protocol, v.client, v.server, v.operation) == ("modbus", "10.0.0.1", "10.0.0.2", "read_holding_registers")
    assert v.keys == ("1:hr:100",) and v.writes == () and not v.is_write and not v.is_error
    assert v.answered is True and v.request is True and v.latency_ns == 5_000_000
    # ADU bytes: request MBAP 7 + FC 1 + address/quantity 4 = 12; response 7 + 1 + byte count 1 + 20 = 29
    assert v.nbytes == 12 + 29
    assert view_of(txn(3, ModbusRequest(100, 10), ModbusResponse(quantity=10))) == v._replace(operation="f")


def test_modbus_write_multiple_registers_one_key_per_register():
    v = modbus_view(txn(16, ModbusRequest(30, 2, (150, 160)), ModbusResponse(30, 2), unit=2))
    assert v.is_write and v.keys == ("2:hr:30",)
    assert v.writes == (("2:hr:30", 150.0), ("2:hr:31", 160.0))
    assert v.nbytes == (8 + 5 + 4) + (8 + 4)


def test_modbus_coil_write_values_are_numbers():
    v = modbus_view(txn(5, ModbusRequest(7, 1, (True,)), ModbusResponse(7, 1, (True,))))
    assert v.keys == ("1:co:7",) and v.writes == (("1:co:7", 1.0),)


def test_modbus_exception_unanswered_unsolicited():
    e = modbus_view(txn(65, ModbusRequest(details={"data_length": 2}), exc=1))
    assert e.is_error and e.answered is True and e.keys == ("1:fc65",)
    assert e.nbytes == (8 + 2) + (8 + 1)  # unknown code: PDU data length; exception: code byte
    u = modbus_view(txn(3, ModbusRequest(0, 1), anomalies=("unanswered_request",)))
    assert u.answered is False and u.latency_ns is None and not u.anomalous  # counted by the balance instead
    s = modbus_view(txn(3, None, ModbusResponse(quantity=1), anomalies=("unsolicited_response",)))
    assert s.request is False and s.answered is True and s.latency_ns is None
    m = modbus_view(txn(3, ModbusRequest(0, 1), ModbusResponse(quantity=1), anomalies=("byte_count_mismatch",)))
    assert m.anomalous


def test_adapter_registry_one_per_type():
    assert ADAPTERS[ModbusTransaction] is modbus_view
    with pytest.raises(ValueError, match="already registered"):
        adapter_for(ModbusTransaction)(lambda ev: None)
    assert view_of(object()) is None


# ---------------------------------------------------------------------------------------------- windows

def view(t_s: float, op="read_holding_registers", keys=("1:hr:0",), client="10.0.0.1", server="10.0.0.2",
         write=False, writes=(), error=False, answered=True, request=True, lat=0.01, nbytes=40):
    return FeatureView(T0 + round(t_s * NS), "modbus", client, server, op, write, error, keys, writes, answered,
                       request, round(lat * NS) if lat is not None else None, nbytes, False, FLOW)


def run(views, profiles=None, spec=WindowSpec(), until=None):
    out = []
    w = Windower(spec, profiles, lambda m, r: out.extend(zip(m, r)))
    for v in views:
        w.add(v)
    w.advance(views[-1].ts if until is None else T0 + until * NS)
    return w, out


def col(spec: WindowSpec, name: str) -> int:
    return spec.feature_names().index(name)


def test_warm_up_first_row_and_boundaries():
    spec = WindowSpec()
    # a poll every 2 s from t=1 to t=200: the first hop [0,10) is partial, so the first row whose 60 s window
    # lies after it ends at 70 s; the last hop to close is the one ending at 190 (200 - lateness 2 >= 190).
    w, rows = run([view(1 + 2 * i) for i in range(100)])
    ends = [(m.end - T0) / NS for m, _ in rows]
    assert ends[0] == 70 and ends[-1] == 190 and ends == sorted(ends)
    m, r = rows[0]
    assert (m.start - T0) / NS == 10 and m.client == "10.0.0.1"
    assert r[col(spec, "txn_rate_10s")] == 0.5  # 5 requests in [60, 70)
    assert r[col(spec, "txn_rate_60s")] == 0.5  # 30 in [10, 70)
    assert r[col(spec, "iat_mean_10s")] == 2.0 and r[col(spec, "iat_cv_10s")] == 0.0
    assert r[col(spec, "byte_rate_60s")] == 30 * 40 / 60
    assert r[col(spec, "latency_mean_10s")] == pytest.approx(0.01)
    assert r[col(spec, "new_pair")] == 1.0 and r[col(spec, "new_key_count_10s")] == 1.0


def test_balance_errors_writes_and_diversity():
    spec = WindowSpec(10, (10,), 2)
    views = [view(1 + i) for i in range(9)]  # warm-up hops
    views += [view(20.5, answered=False), view(21, request=False), view(22), view(23, error=True),
              view(24, op="write_single_register", keys=("1:hr:20",), write=True, writes=(("1:hr:20", 50.0),)),
              view(25, op="write_single_register", keys=("1:hr:20",), write=True, writes=(("1:hr:20", 60.0),)),
              view(33)]
    _, rows = run(views, spec=spec)
    r = dict(((m.end - T0) // NS, row) for m, row in rows)[30]
    c = {n: r[i] for i, n in enumerate(spec.feature_names())}
    # 6 exchanges: 5 requests; unanswered 1, unsolicited 1, answered 4 -> (1 - 1) / 6 = 0
    assert c["txn_rate_10s"] == 0.5 and c["response_balance_10s"] == 0.0
    assert c["error_share_10s"] == 1 / 6 and c["write_share_10s"] == 2 / 6
    # ops: 4 reads, 2 writes -> 1 - (4/6)^2 - (2/6)^2 = 4/9
    assert c["op_distinct_10s"] == 2 and c["op_diversity_10s"] == pytest.approx(4 / 9)
    assert c["wval_rate_10s"] == 0.2 and c["wval_mean_10s"] == 55 and c["wval_min_10s"] == 50
    assert c["wval_max_10s"] == 60 and c["wval_std_10s"] == pytest.approx(math.sqrt(50))
    assert c["key_distinct_10s"] == 2 and c["new_write_key_count_10s"] == 1


def test_profile_novelty_and_value_deviation():
    spec = WindowSpec(10, (10,), 2)
    pb = ProfileBuilder()
    for i in range(20):  # training: reads of 1:hr:0 every second, writes of 40..50 to 1:hr:20 every 2 s
        pb.add(view(i))
        if i % 2 == 0:
            pb.add(view(i + 0.5, op="write_single_register", keys=("1:hr:20",), write=True,
                        writes=(("1:hr:20", 40.0 + i // 2),)))
    prof = profiles_from_json(pb.to_json())
    p = prof[("10.0.0.1", "10.0.0.2", "modbus")]
    assert p.periods[("read_holding_registers", "1:hr:0")] == 1.0
    assert p.writes["1:hr:20"] == (40.0, 49.0, 4.9)  # spread = max(std 3.03, 10% of 49, 1)
    views = [view(1 + i) for i in range(25)]
    views += [view(20.5, op="write_single_register", keys=("1:hr:20",), write=True, writes=(("1:hr:20", 98.0),)),
              view(21.5, keys=("1:hr:500",)), view(22.5, op="read_coils", keys=("1:co:0",))]
    views.sort(key=lambda v: v.ts)
    _, rows = run(views, prof, spec, until=40)
    c = dict(zip(spec.feature_names(), dict(((m.end - T0) // NS, r) for m, r in rows)[30]))
    assert c["new_pair"] == 0.0
    assert c["wval_dev_10s"] == pytest.approx((98 - 49) / 4.9)
    assert c["new_key_count_10s"] == 2 and c["new_op_count_10s"] == 1 and c["new_write_key_count_10s"] == 0
    # value statistics relative to the key's training range: (98 - middle 44.5) / spread 4.9
    assert c["wval_max_10s"] == c["wval_min_10s"] == c["wval_mean_10s"] == (98 - 44.5) / 4.9


def test_value_statistics_pool_keys_of_different_scales():
    """A temperature topic (60-70) and a vibration topic (0.1-0.9) of one MQTT sensor: relative to their own
    training ranges, typical values of both stay within a spread or so, and missing one of them does not make
    the pooled minimum jump by the other's scale (features v2; v1 pooled raw values)."""
    spec = WindowSpec(10, (10,), 2)
    pb = ProfileBuilder()
    for i in range(40):
        k, v = ("plant/t", 60.0 + i % 11) if i % 2 else ("plant/v", 0.1 + 0.02 * i)
        pb.add(view(i, op="publish", keys=(k,), write=True, writes=((k, v),)))
    prof = profiles_from_json(pb.to_json())
    views = [view(1 + i) for i in range(25)]
    views += [view(20.5, op="publish", keys=("plant/t",), write=True, writes=(("plant/t", 65.0),)),
              view(21.5, op="publish", keys=("plant/t",), write=True, writes=(("plant/t", 70.0),))]
    views.sort(key=lambda v: v.ts)
    _, rows = run(views, prof, spec, until=40)
    c = dict(zip(spec.feature_names(), dict(((m.end - T0) // NS, r) for m, r in rows)[30]))
    # plant/t: range 60-70, spread max(std, 7.0, 1) = 7.0, middle 65
    assert (c["wval_min_10s"], c["wval_max_10s"]) == (0.0, 5.0 / 7.0)
    assert c["wval_dev_10s"] == 0.0


def test_period_error_against_training_period():
    spec = WindowSpec(10, (10,), 2)
    pb = ProfileBuilder()
    for i in range(10):
        pb.add(view(i * 2.0))
    prof = profiles_from_json(pb.to_json())
    # steady 2 s polling, then in [30, 40) three extra requests (a replay): intervals 2,1,1,... around them
    ts = [1 + 2 * i for i in range(20)] + [34.0, 36.5, 38.5]
    _, rows = run([view(t) for t in sorted(ts)], prof, spec, until=50)
    by_end = dict(((m.end - T0) // NS, r) for m, r in rows)
    c = dict(zip(spec.feature_names(), by_end[30]))
    assert c["period_error_10s"] == 0.0
    c = dict(zip(spec.feature_names(), by_end[40]))
    # requests at 31,33,34,35,36.5,37,38.5,39: intervals 2,2,1,1,1.5,0.5,1.5,0.5
    # -> |dt-2|/2 = 0,0,.5,.5,.25,.75,.25,.75: 3 over 8
    assert c["period_error_10s"] == 0.375


def test_resumed_stream_counts_no_error_and_dormant_pairs_stop():
    spec = WindowSpec(10, (10, 30), 2)
    views = [view(1 + 2 * i) for i in range(30)]  # until t=59
    views += [view(200), view(202), view(204), view(300)]
    w, rows = run(views, spec=spec)
    ends = [(m.end - T0) // NS for m, _ in rows]
    # silence after 59: rows until the 30 s window is empty (end 80 covers [50, 80)), then none until 200
    assert 80 in ends and 90 not in ends and 190 not in ends and 210 in ends
    c = dict(zip(spec.feature_names(), dict(((m.end - T0) // NS, r) for m, r in rows)[210]))
    assert c["period_error_10s"] == 0.0  # 141 s after the last request: a resumed stream, not an error
    assert w.late == 0


def test_late_exchange_counts_in_the_open_hop():
    spec = WindowSpec(10, (10,), 2)
    views = [view(1 + i) for i in range(25)] + [view(5.0), view(26)]
    out = []
    w = Windower(spec, None, lambda m, r: out.extend(zip(m, r)))
    for v in views:
        w.add(v)
    w.advance(T0 + 40 * NS)
    assert w.late == 1
    c = dict(zip(spec.feature_names(), dict(((m.end - T0) // NS, r) for m, r in out)[30]))
    assert c["txn_rate_10s"] == 0.8  # 20..25 and 26, and the late one from t=5 -> 8 in [20, 30)


def test_empty_window_values():
    r = _window_features([], 10.0)
    assert r[13] == 10.0 and sum(r) == 10.0  # iat_mean is the window length, everything else 0


@pytest.mark.parametrize("spec,msg", [
    (WindowSpec(10, (15,), 2), "not a multiple"), (WindowSpec(10, (), 2), "at least one"),
    (WindowSpec(10, (10, 10), 2), "repeat"), (WindowSpec(10, (10,), 10), "lateness"),
    (WindowSpec(0, (10,), 0), "hop")])
def test_bad_window_specs(spec, msg):
    assert msg in spec.check()


def test_feature_set_id_changes_with_the_definitions():
    a, b = WindowSpec(), WindowSpec(10, (10, 30), 2)
    assert a.feature_set_id() != b.feature_set_id()
    assert len(a.feature_names()) == 45 and a.feature_names()[0] == "txn_rate_10s"
    assert a.groups().count("txn_rate") == 2


def test_period_error_v3_sporadic_streams_and_gaps_over_three_periods_count_nothing():
    """Definitions v3: a stream whose training intervals were irregular (an operator's set-point) has no
    period; a regular stream's gap of 4 periods (a screen opened again) counts nothing, a gap of 2 periods 1."""
    spec = WindowSpec(10, (10,), 2)
    pb = ProfileBuilder()
    for i in range(10):
        pb.add(view(i * 2.0))  # a 2 s poll
    for t in (0.0, 3.0, 40.0, 47.0, 200.0, 206.0):  # hand-written set-points: irregular intervals
        pb.add(view(t, op="write_single_register", keys=("1:hr:21",), write=True, writes=(("1:hr:21", 15.0),)))
    js = pb.to_json()
    periods = {(op, k): (per, regular) for op, k, per, regular in js[0]["periods"]}
    assert periods[("read_holding_registers", "1:hr:0")] == (2.0, True)
    assert periods[("write_single_register", "1:hr:21")][1] is False
    prof = profiles_from_json(js)
    sp = [view(t, op="write_single_register", keys=("1:hr:21",), write=True, writes=(("1:hr:21", 15.0),))
          for t in (31.0, 32.0, 38.5)]
    _, rows = run(sorted([view(1 + 2 * i) for i in range(15)] + sp, key=lambda v: v.ts), prof, spec, until=50)
    c = dict(zip(spec.feature_names(), dict(((m.end - T0) // NS, r) for m, r in rows)[40]))
    assert c["period_error_10s"] == 0.0  # the poll is steady and the set-points have no period
    # the poll pauses: 8 s (4 periods) counts nothing, 4 s (2 periods) counts |4 - 2| / 2 = 1
    ts = [1 + 2 * i for i in range(15)] + [37.0, 39.0] + [43.0, 45.0, 47.0]
    _, rows = run([view(t) for t in sorted(set(ts) - {31.0, 33.0, 35.0, 41.0})], prof, spec, until=60)
    by_end = dict(((m.end - T0) // NS, r) for m, r in rows)
    assert dict(zip(spec.feature_names(), by_end[40]))["period_error_10s"] == 0.0  # 29 -> 37: 4 periods
    assert dict(zip(spec.feature_names(), by_end[50]))["period_error_10s"] == pytest.approx(1 / 3)  # 39 -> 43
