"""Registers each protocol's feature view (ids/protocols/<name>/ml.py, `ProtocolSpec.extra["ml"]`) as the
adapter of its records; imported for that effect by the detector and `otids train`."""
from __future__ import annotations

from ...protocols import REGISTRY
from .view import adapter_for

for _spec in REGISTRY.values():
    _view = _spec.extra.get("ml")
    if _view is not None:
        for _t in _spec.records:
            adapter_for(_t)(_view)
