"""Capture-loss detector: a sensor that misses frames is partly blind, and an attacker who floods a span
port to hide in the loss wins exactly then; so loss is a finding of its own, not only a counter.

Reads the live sensor's `otids.stats` events (ids.live). Alerts when one interval loses at least
`live.loss_alert_ratio` of the frames seen and at least `live.loss_alert_min` frames; while the loss lasts
it alerts again only when the ratio has at least doubled since the last alert (the loss is rising), and
the episode ends with the first interval without loss. An interface going down alerts at once.
"""
from __future__ import annotations

from ..config import LiveConfig
from ..events import Alert, SensorStats

LOSS_RULE = ("otids.sensor.capture_loss", "Capture loss on a monitored interface",
             "The sensor received fewer frames than the interface delivered: the kernel dropped them because "
             "the sensor did not keep up, or the sensor could not use them. Traffic in the loss went "
             "unanalysed; a burst of traffic meant to blind the sensor looks exactly like this.")
DOWN_RULE = ("otids.sensor.interface_down", "Monitored interface down",
             "A capture interface went down or disappeared: nothing on it is analysed until it returns "
             "(cable pulled, span session removed, switch port shut).")


class CaptureLossDetector:
    def __init__(self, cfg: LiveConfig):
        self.cfg = cfg
        self.episodes: dict[str, float] = {}  # interface -> loss ratio of the last alert in this episode

    def reload(self, config) -> None:
        self.cfg = config.live

    @staticmethod
    def accepts(t: type) -> bool:
        """Only the sensor's stats events are routed here: with live workers an event type routed to a
        detector crosses to the sensor, so without this every Modbus transaction was pickled for nothing."""
        return t is SensorStats

    def on_event(self, ev) -> list[Alert] | None:
        if type(ev) is not SensorStats:
            return None
        if ev.action == "interface_down":
            rid, name, desc = DOWN_RULE
            return [Alert(ev.ts, rid, name, desc, "high", f"capture interface {ev.interface} went down "
                          f"({ev.details.get('reason', 'link down')})", "sensor", event=ev)]
        if ev.action != "capture":
            return None
        d = ev.details
        lost = d.get("kernel_drops", 0) + d.get("sensor_drops", 0)
        iface = ev.interface or "-"
        if lost == 0:
            self.episodes.pop(iface, None)
            return None
        ratio = d.get("loss_ratio", 0.0)
        if ratio < self.cfg.loss_alert_ratio or lost < self.cfg.loss_alert_min:
            return None
        last = self.episodes.get(iface)
        if last is not None and ratio < 2 * last:
            return None
        self.episodes[iface] = ratio
        rid, name, desc = LOSS_RULE
        reason = (f"{iface}: {lost:,} of {lost + d.get('packets', 0) - d.get('sensor_drops', 0):,} frames lost in "
                  f"{d.get('interval_s', 0):g} s ({ratio:.2%}; kernel {d.get('kernel_drops', 0):,}, "
                  f"sensor {d.get('sensor_drops', 0):,})" + (" - rising" if last is not None else ""))
        return [Alert(ev.ts, rid, name, desc, "high" if ratio >= 0.1 else "medium", reason, "sensor", event=ev,
                      extra={"loss_ratio": ratio, "lost": lost})]

    def flush(self, ts: int) -> None:
        return None
