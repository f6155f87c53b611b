# Cython declarations augmenting tcp.py (compiled path, setup.py): Stream becomes an extension type, so the
# flow table reads its fields from the struct. Every field stays a Python object (no C integer overflow), but
# last_sum, a hash.
cdef class Stream:
    cdef public object next_seq, segs, heap, anchor, buffered, fin_seq, bytes, gaps, gap_bytes, overlaps
    cdef public object retrans, closed, pool, last_at, last_end
    cdef public Py_ssize_t last_sum  # hash() of the last segment delivered in order (Py_hash_t: no object per packet)
