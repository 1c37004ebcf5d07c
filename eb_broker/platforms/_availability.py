"""Whether a platform's remote API answers: the bookkeeping the API-driven platforms share.

Kubernetes, OpenStack and Slurm platforms talk to a service that may be down for a while. A
call that cannot reach it is not a failure of a session: the platform remembers that (and
why), ``check`` answers NO with ``urn:platform-unavailable``, and the next call that gets
through clears it. One mixin keeps that logic, and its logging (one warning per new reason,
one info line when the API is back), the same on every platform.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

from .base import PlatformUnavailable


class TracksAvailability:
    """Mixin of a :class:`~eb_broker.platforms.base.Platform` whose API may be unreachable.

    Subclasses set the two log lines and, for :meth:`_calling_api`, the exception their
    client raises when the API cannot be reached.
    """

    log: logging.Logger | logging.LoggerAdapter[logging.Logger]

    #: Logged (with the reason) when the API becomes unreachable or the reason changes.
    unavailable_log: ClassVar[str] = "API unavailable: %s"
    #: Logged when the API answers again.
    available_log: ClassVar[str] = "API reachable again"
    #: What the client raises when the API cannot be reached (caught by :meth:`_calling_api`).
    unavailable_error: ClassVar[type[PlatformUnavailable]] = PlatformUnavailable

    _available: bool = True
    _reason: str = ""

    def _mark_unavailable(self, reason: str) -> None:
        if self._available or reason != self._reason:
            self.log.warning(self.unavailable_log, reason)
        self._available = False
        self._reason = reason

    def _mark_available(self) -> None:
        if not self._available:
            self.log.info(self.available_log)
        self._available = True
        self._reason = ""

    @property
    def available(self) -> bool:
        """Whether the API answered the last call."""
        return self._available

    @contextmanager
    def _calling_api(self) -> Iterator[None]:
        """Around calls that must reach the API: an unreachable API marks the platform
        unavailable and the error propagates (for the reconciler to retry the step later);
        a block that ran through marks it available."""
        try:
            yield
        except self.unavailable_error as exc:
            self._mark_unavailable(str(exc))
            raise
        self._mark_available()
