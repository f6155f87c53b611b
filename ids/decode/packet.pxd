# Cython declarations augmenting packet.py (compiled path, setup.py): the decoder and its counters become
# extension types read from the struct. Fields stay Python objects (no C integer overflow).
from ids._records cimport new_record

cdef class DecodeStats:
    cdef public object packets, bytes, not_ip, not_tcp_udp, malformed, truncated, bad_checksum, fragments
    cdef public object linktype_unknown, checksum_checked

cdef class Decoder:
    cdef public DecodeStats stats
    cdef public object frag, verify, auto, auto_sample, checksum_note, notices

cpdef object _sum_mod(object data, Py_ssize_t start, Py_ssize_t end)
