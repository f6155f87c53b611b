# Cython declarations augmenting anomalies.py (compiled path, setup.py): the per-transaction checker becomes
# an extension type, so the anomaly detector calls it through the C call slot and it reads its fields from
# the struct. Fields stay Python objects.
cdef class ModbusChecker:
    cdef public object det, cfg, exc_window
    cdef public dict exc
