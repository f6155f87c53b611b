# Cython declarations augmenting budget.py (compiled path, setup.py): Pool and the Charged table become
# extension types, so a session's `pending[tid] = ...` and `del pending[tid]` reach Charged's code through
# the C mapping slot instead of a Python-level __setitem__ lookup and call, and Charged calls the pool's
# methods directly. Every field stays a Python object (no C integer overflow).
cdef class Pool:
    cdef public object name, limit, used, peak, hits, reported, last_notice, quiet, shown
    cpdef take(self, n)
    cpdef give(self, n)

cdef class Charged(dict):
    cdef public Pool pool
    cdef public object cost, over
    cpdef take_over(self)
