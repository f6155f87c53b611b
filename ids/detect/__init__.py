"""detect (see docs/ARCHITECTURE.md)."""
