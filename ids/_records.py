"""Building a hot-path record (a NamedTuple: Packet, ModbusTransaction, ...) from a tuple of its fields,
without the generated __new__'s argument handling. As Python this is `tuple.__new__`; compiled modules
cimport the C version in `_records.pxd` beside this file (the same object, built without the generic call
through tuple.__new__), and import this one only when they run as Python:

    if not cython.compiled:
        from .._records import new_record
"""
new_record = tuple.__new__
