"""``python -m api.cli``: the ``consent-ledger`` command."""

from api.cli import main

main()
