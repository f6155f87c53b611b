"""ML anomaly detection that explains itself (docs/ML.md).

view.py      the feature view every protocol event is adapted to, and the adapter registry
adapters.py  registers each protocol's feature view (ids/protocols/<name>/ml.py) for its records
features.py  window features per (client, server, protocol) and training profiles
models.py    IsolationForest (default), LocalOutlierFactor and a robust z-score baseline: fit, score
store.py     model files (arrays + JSON, nothing executed on load)
detector.py  the detector inside `otids analyze --model DIR`, with explanations
train.py     `otids train`;  evaluate.py  `otids eval` (metrics, labels, --bench)
"""
