# Cython declarations augmenting engine.py (compiled path, setup.py): the Engine becomes an extension type
# whose fields on_event reads from the struct. on_event updates the event Counter as the dict it is (a cast
# in engine.py): not through Counter's item assignment slot, which is Python-level because Counter defines
# __delitem__ (a method lookup and a call per event).
cdef class Engine:
    cdef public object detectors, alert_sinks, event_sinks, alerts, alert_rules, alert_hosts, last_ts
    cdef public object alert_filters, suppressed, alert_observers, events
    cdef public dict _routes, _internal
