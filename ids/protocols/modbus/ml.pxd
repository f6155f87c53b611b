# Cython declarations augmenting ml.py (compiled path, setup.py): the feature view is built by the C record
# builder (ids/_records.pxd) rather than through FeatureView's generated __new__.
from ids._records cimport new_record

cpdef tuple _key(unit, table, addr)
cpdef tuple _modbus_keys(unit, fc, req)
cpdef tuple _modbus_writes(unit, fc, req)
cpdef _modbus_bytes(fc, req, resp, exc)
