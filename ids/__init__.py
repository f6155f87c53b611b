"""otids: passive security monitor and intrusion detection for industrial networks.

The data path is capture -> decode -> flow -> protocols -> detect -> output; docs/ARCHITECTURE.md has
the map and ids/events.py is the one contract between parsing and detection.
"""

__version__ = "0.1.0"

# Per-packet modules may run compiled (Cython, built by setup.py); env OTIDS_PURE=1 or a stale build makes
# them load from their .py sources instead (ids/_build.py says which, `otids version` prints it).
from . import _build

_build.install()
