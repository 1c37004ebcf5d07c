"""A JupyterHub spawner that consults Execution Brokers: spawn now, or book a slot for later.

``c.JupyterHub.spawner_class = "eb"`` (entry point) or ``"eb_spawner.EBSpawner"``; the
bookings service is ``python -m eb_spawner.service``. See docs/spawner.md.
"""

from .spawner import EBSpawner

__all__ = ["EBSpawner"]
