"""The Slurm platform (``--platform=slurm``): see :mod:`.platform` and docs/platforms/slurm.md.

* :mod:`.objects` — pure parsers and command-line builders (no I/O);
* :mod:`.cli` — :class:`SlurmClient`, the one place that talks to Slurm, and its CLI
  implementation :class:`SlurmCLI`;
* :mod:`.platform` — :class:`SlurmPlatform`, the broker's plugin.
"""

from __future__ import annotations

from .cli import SlurmCLI, SlurmClient
from .objects import SlurmError, SlurmUnavailable
from .platform import SlurmPlatform

__all__ = ["SlurmCLI", "SlurmClient", "SlurmError", "SlurmPlatform", "SlurmUnavailable"]
