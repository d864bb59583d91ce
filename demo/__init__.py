"""The demo data set: deterministic, signed-ready facts for a believable ledger (docs/demo.md).

Data, not an interface: :mod:`demo.dataset` generates the facts; ``consent-ledger demo``
(``api/cli/demo.py``) loads them. It needs only the standard library (and may import ``ledger``).
"""
