# Cython declarations augmenting session.py (compiled path, setup.py): ModbusSession becomes an extension
# type, so the per-frame code reads its fields from the struct and calls its own methods directly instead of
# looking each up by name. Every field stays a Python object (no C integer overflow); the .py's __slots__
# name the same fields for the pure-Python module.
from ids.flow.budget cimport Charged
from ids._records cimport new_record

cdef class ModbusSession:
    cdef public object sc, emit, buf, valid, bad, resync, cap, max_pending, timeout, ctx
    cdef public Charged pending
    cpdef _request(self, ts, tid, unit, fc, pdu, an0=*)
    cpdef _response(self, ts, tid, unit, fc, pdu, an0=*)
    cpdef _emit(self, ts, tid, unit, fc, req, resp, exc, anomalies, rts)
    cpdef _unanswered(self, p, tid, extra=*)
