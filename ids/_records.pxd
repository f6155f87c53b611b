# The compiled twin of _records.py (cimported by the per-packet modules' .pxd files): a NamedTuple record
# allocated and filled directly, as tuple.__new__(cls, values) does for a tuple subclass (tuple_subtype_new:
# the type's allocator, then each item), without the generic call through tuple.__new__'s wrapper. Only for
# the project's NamedTuple classes (the generic allocator, no __new__ of their own beyond the generated one).
from cpython.object cimport PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_SET_ITEM

cdef extern from "Python.h":
    object PyType_GenericAlloc(PyTypeObject *t, Py_ssize_t n)

cdef inline object new_record(object cls, tuple values):
    cdef Py_ssize_t i, n = len(values)
    obj = PyType_GenericAlloc(<PyTypeObject*>cls, n)
    for i in range(n):
        v = values[i]
        Py_INCREF(v)
        PyTuple_SET_ITEM(obj, i, v)
    return obj
