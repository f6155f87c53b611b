"""otids: passive security monitor and intrusion detection for industrial networks.

The data path is capture -> decode -> flow -> protocols -> detect -> output; docs/ARCHITECTURE.md has
the map and ids/events.py is the one contract between parsing and detection.
"""

__version__ = "0.1.0"
