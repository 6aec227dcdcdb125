"""``python -m e2a.api``: the API server (what ``e2a serve api`` becomes)."""

from e2a.api.server import main

main()
