"""Baseline: learn what normal traffic looks like, let engineers review it, alert on deviations.

document.py (the YAML file: sections, identities, load/dump, re-learn merge, diff), yamlio.py (deterministic
YAML with comments that follow entries), learner.py and enforcer.py (generic parts: assets, talker pairs,
the deviation -> alert bookkeeping), protocols.py (each protocol's part: ids/protocols/<name>/baseline.py, one module per
protocol), periodic.py (polling periods), rules.py (alert rules); ids/commands/baseline.py (learn, baseline diff/check,
analyze --baseline). The file format is documented in models/README.md.
"""
from __future__ import annotations

from .enforcer import BaselineDetector, LearnThenEnforce
from .learner import Learner
from .document import Baseline, BaselineError, load

__all__ = ["Baseline", "BaselineDetector", "BaselineError", "LearnThenEnforce", "Learner", "load"]
