"""``python -m eb_broker`` runs the broker service."""

from .app import main

main()
