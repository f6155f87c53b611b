# Cython declarations augmenting runner.py (compiled path, setup.py): the worker's loop calls the router and
# sets the emitter's merge key through their C declarations (shard.pxd).
from ids.parallel.shard cimport Emitter, Router, Scan
