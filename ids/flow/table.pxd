# Cython declarations augmenting table.py (compiled path, setup.py): Flow becomes an extension type whose
# fields the per-packet code reads from the struct. Every field stays a Python object (no C integer
# overflow); the .py's __slots__ name the same fields for the pure-Python modules.
from ids.flow.tcp cimport Stream

cdef class Flow:
    cdef public object flow_id, proto, client_ip, server_ip, client_port, server_port, client_mac, server_mac
    cdef public object vlan, first_ts, last_ts, session, app, probe, probing, midstream, closed, fin
    cdef public object pkts, bytes, ctx, bad_checksums, established, notices, ipb, hseen, hist, cnotes, etype
    cdef public object ident, ident_by, dissector, istate
    cdef public Stream to_server, to_client
