# Cython declarations augmenting ml.py (compiled path, setup.py): the feature view is built by the C record
# builder (ids/_records.pxd) rather than through FeatureView's generated __new__; its helpers are called
# directly.
from ids._records cimport new_record

# module tables read on every exchange: typed, so each lookup is a direct dict/set call
cdef dict _TABLE, _KEYS
cdef frozenset _WRITES, _BALANCE

cpdef tuple _key(unit, table, addr)
cpdef tuple _modbus_keys(unit, fc, req)
cpdef tuple _modbus_writes(unit, fc, req)
cpdef _modbus_bytes(fc, req, resp, exc)
