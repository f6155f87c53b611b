# Cython declarations augmenting features.py (compiled path, setup.py): the windowing state becomes
# extension types, so Windower.add reads and bumps a bucket's counters in its C struct and calls its own
# helpers directly, instead of one attribute lookup per counter (docs/ML.md "Throughput"). Counters only
# ever grow by one (C long long); sums are C doubles, the same IEEE double the pure module adds in; every
# other field stays a Python object. Written values are C doubles in _writes: a view's values are floats
# (view.py; every adapter converts them). The .py's __slots__ name the same fields for the pure-Python module;
# a field added to these classes in features.py needs its line here too.
cimport cython

cdef class _Bucket:
    cdef public long long n, req, unans, unsol, ans, err, anom, wr, lat_n, iat_n, pe_n, wv_n
    cdef public object nbytes
    cdef public double lat_sum, iat_sum, iat_sq, pe_sum, wv_sum, wv_sq, wv_min, wv_max, wv_dev
    cdef public dict ops
    cdef public set keys, nkeys, nwkeys, nops

cdef class _Stream:
    cdef public object last
    cdef public double est, ref
    cdef public bint known

cdef class _Pair:
    cdef public object key, last_req, flow, profile, newest
    cdef public dict buckets, streams
    cdef public bint known

cdef class Windower:
    cdef public object spec, stand_in, hop, lateness, nb, nb_max, profiles, emit, max_pairs
    cdef public dict pairs, active
    cdef public object open_idx, first_idx, close_at, late, pairs_evicted, key_cap_hits, stream_cap_hits
    cdef public object max_bytes, reserve, state_bytes, pairs_refused, refused_ack, rows, nfeat
    cdef public dict adapters
    cdef public object slow, detector, due

    @cython.locals(p=_Pair, b=_Bucket, ops=dict, bkeys=set)
    cpdef add(self, v)
    cpdef _new_pair(self, key)
    cpdef _pair_bytes(self, _Pair p)
    @cython.locals(st=_Stream, dt=cython.double, ref=cython.double, e=cython.double)
    cpdef _period(self, _Pair p, _Bucket b, op, k, ts)
    @cython.locals(val=cython.double, x=cython.double, dev=cython.double, d=cython.double)
    cpdef _writes(self, _Bucket b, prof, keys, writes)
    cpdef advance(self, now)
    cpdef _row(self, _Pair p, k)
