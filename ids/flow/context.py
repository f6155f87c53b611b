"""What a protocol session may use of the flow it dissects: `emit` for its records, the run's `config`, the
flow's facts (its FlowContext, server port, mid-stream pickup), and the two notices a session can raise
(detach: not this protocol after all; truncated: a PDU that never completed), and the run's global
reassembly budget. Not the flow table."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ..events import FlowContext


class SessionContext:
    __slots__ = ("_table", "_flow", "emit", "config")

    def __init__(self, table, flow):
        self._table = table
        self._flow = flow
        self.emit: Callable = table.emit
        # ids.config.Config; not imported even for type checkers: config is built from the protocols' specs,
        # whose sessions import this module, and the house keeps even type-only imports acyclic
        self.config: Any = table.config  # a session reads its own section (config.modbus, ...)

    @property
    def context(self) -> FlowContext:
        """The network side of every record of this flow (built once, on first use)."""
        return self._flow.context

    @property
    def run_key(self) -> object:
        """An opaque object, the same for every session of one run: state a protocol keeps across its flows
        (Sparkplug births, PubSub metadata) is keyed by it, weakly, so it ends with the run."""
        return self._table

    @property
    def server_port(self) -> int:
        return self._flow.server_port

    @property
    def midstream(self) -> bool:
        """The flow was picked up after its start: its first bytes need not start a PDU."""
        return bool(getattr(self._flow, "midstream", False))

    def detach(self, ts: int, reason: str) -> None:
        """Stop dissecting this flow (not this protocol after all); a protocol_violation notice says why."""
        self._table.detach(self._flow, ts, reason)

    @property
    def reassembly_pool(self):
        """The run's global budget for protocol reassembly buffers (limits.reassembly_total, flow/budget.py):
        a session charges what it holds across PDUs here, so many flows cannot add their per-flow caps up."""
        return getattr(self._table, "reassembly_pool", None)

    @property
    def pending_pool(self):
        """The run's budget for requests awaiting answers over all flows (limits.pending_total): sessions
        charge their pending tables here through a budget.Ledger."""
        return getattr(self._table, "pending_pool", None)

    def memory_cap(self, ts: int, pool) -> None:
        """`pool` refused a charge of this flow's: a memory_cap notice (and alert), once per quiet period."""
        self._table.memory_cap(self._flow, ts, pool)

    def oversized(self, ts: int, protocol: str, announced: int, limit: int, to_server: bool) -> None:
        """A PDU's length field announces more than the session will hold (`limit`): an `oversized_pdu`
        notice (and alert) at once, not when (if ever) the PDU ends; sessions call it once per flow."""
        notice = getattr(self._table, "_notice", None)  # stand-in tables of unit tests have none
        if notice is not None:
            notice(self._flow, ts, "oversized_pdu", {"protocol": protocol, "announced_bytes": announced,
                                                     "max_bytes": limit, "to_server": to_server})

    def truncated(self, ts: int, protocol: str, nbytes: int, to_server: bool) -> None:
        """The session ends holding `nbytes` of a PDU that never completed (a truncated_pdu notice)."""
        self._table.truncated(self._flow, ts, protocol, nbytes, to_server)
