# Cython declarations augmenting parser.py (compiled path, setup.py): requests and responses are built by
# the C record builder (ids/_records.pxd) rather than through tuple.__new__.
from ids._records cimport new_record
