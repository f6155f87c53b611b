"""flow (see docs/ARCHITECTURE.md)."""
