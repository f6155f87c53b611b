"""Stand-in for the `cython` module where Cython is not installed: the few names the per-packet modules use
to declare C types (ids/_build.py lists them) do nothing, exactly as Cython's own shadow module does when
the code runs uncompiled. Modules import it as `try: import cython / except ImportError: from .. import
_cy as cython`."""

compiled = False


def __getattr__(name: str):
    """Type names (cython.Py_ssize_t, cython.p_uchar, ...) are only ever handed to locals()/declare()."""
    if name.startswith("__"):
        raise AttributeError(name)
    return object


def locals(**_types):  # noqa: A001 - the name Cython gives it
    return lambda f: f


def declare(_type=None, value=None, **_kw):
    return value


def cast(_type, value, **_kw):
    return value
