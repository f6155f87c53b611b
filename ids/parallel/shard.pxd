# Cython declarations augmenting shard.py (compiled path, setup.py): the router's bucket table and packet
# counts become C arrays, and the emitter's merge key C fields the worker's loop (runner.py) sets without
# making an object per packet. The .py code is the reference; pure Python keeps them in lists and attributes.

cdef class Emitter:
    cdef public long long i, seq
    cdef public int step
    cdef public object fid
    cdef public list out
    cdef public dict plans, counts
    cdef public object det, types, engine, send_all, inserted, lim_entries
    cdef public Py_ssize_t lim_max

cdef class Router:
    cdef public int n, nbp
    cdef public object broker_ports, cache
    cdef int bp[8]
    cdef unsigned char buckets[65536]  # BUCKETS
    cdef long long loads[255]
    cpdef int _take(self, Py_ssize_t h) except -1
    cpdef int frame_owner(self, object data) except -2
    cdef int owner_at(self, const unsigned char *b, Py_ssize_t n) except -2

cdef class Scan:
    cdef public Router router
    cdef public int me, batch
    cdef public long long i, c_next_sweep, skipped, skipped_bytes
    cdef public object ts, next_sweep
    cdef public bint auto

cdef Py_ssize_t _bucket4(long long a, long long b) except -1
