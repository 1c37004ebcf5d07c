"""A broker for one platform behind the :class:`~eb_broker.service.BrokerService` seam.

:class:`CoreService` answers from its own capacity: the :class:`~eb_broker.core.BrokerCore`
(ledger, timeline, policies, platform, data staging) for offers and updates, the
:class:`~eb_broker.lifecycle.Reconciler` for what happens after an accept. It turns the core's
ledger rows into the client's wire objects and computes what ``/capabilities`` and
``/health`` say, so the web layer and the application know nothing of either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from eb_sdk.model import Capabilities, ExecutionRequest, Phase, ScheduledExecutionSession

from .archive import detailed, record, to_csv, to_parquet
from .auth import Identity
from .core import BrokerCore
from .errors import NothingOffered
from .ledger import OfferSetRow, SessionRow, row_resources
from .lifecycle import Reconciler
from .service import ArchivePage, ArchiveQuery, Gauges, Health, Links, OfferSetAnswer, Profile
from .translate import SessionView, offerset_to_wire, session_to_wire


class CoreService:
    """The :class:`~eb_broker.service.BrokerService` of a broker with a platform of its own."""

    def __init__(self, core: BrokerCore, profile: Profile, reconcile_interval: float = 1.0) -> None:
        self.core = core
        self.profile = profile
        self.reconciler = Reconciler(core, reconcile_interval)
        # The platform says when something changed (a job ended): reconcile at once.
        core.platform.changed = self.reconciler.wake

    # -- rendering ------------------------------------------------------------------------------

    def _session(self, row: SessionRow, links: Links) -> ScheduledExecutionSession:
        return session_to_wire(
            view_of(row),
            url=links.session(row.uuid),
            platform=self.core.platform.name,
            broker=self.core.settings.name,
        )

    def _offerset(
        self, offerset: OfferSetRow, rows: Sequence[SessionRow], links: Links
    ) -> OfferSetAnswer:
        return OfferSetAnswer(
            offerset_to_wire(
                uuid=offerset.uuid,
                url=links.offerset(offerset.uuid),
                created=offerset.created,
                result=offerset.result,
                messages=offerset.messages or [],
                offers=[self._session(row, links) for row in rows],
            )
        )

    # -- offers and sessions --------------------------------------------------------------------

    async def request_offers(
        self, identity: Identity, request: ExecutionRequest, raw: dict[str, Any], links: Links
    ) -> OfferSetAnswer:
        offerset, rows = await self.core.request_offers(identity, request, raw)
        return self._offerset(offerset, rows, links)

    async def direct(
        self, identity: Identity, request: ExecutionRequest, raw: dict[str, Any], links: Links
    ) -> ScheduledExecutionSession:
        offerset, rows = await self.core.request_offers(identity, request, raw)
        if not rows:
            raise NothingOffered(self._offerset(offerset, rows, links).offerset.messages)
        row = self.core.accept(identity, rows[0].uuid)
        self.reconciler.wake()
        return self._session(row, links)

    async def get_offerset(self, identity: Identity, uuid: str, links: Links) -> OfferSetAnswer:
        offerset, rows = self.core.get_offerset(identity, uuid)
        return self._offerset(offerset, rows, links)

    async def get_session(
        self, identity: Identity, uuid: str, links: Links
    ) -> ScheduledExecutionSession:
        return self._session(self.core.get_session(identity, uuid), links)

    async def list_sessions(
        self, identity: Identity, phases: Sequence[str] | None, links: Links
    ) -> list[ScheduledExecutionSession]:
        return [self._session(row, links) for row in self.core.list_sessions(identity, phases)]

    async def update_phase(
        self, identity: Identity, uuid: str, value: str, links: Links
    ) -> ScheduledExecutionSession:
        row = self.core.update_phase(identity, uuid, value)
        self.reconciler.wake()
        return self._session(row, links)

    # -- what the broker says of itself ---------------------------------------------------------

    async def capabilities(self) -> Capabilities:
        core = self.core
        limits = core.limits
        largest = limits.max_resources
        extra = dict(core.platform.capabilities())
        extensions = list(extra.pop("extensions", []))
        figures = {"bandwidth": limits.bandwidth_mbit, "latency": limits.latency_ms}
        interactivity = {name: value for name, value in figures.items() if value}
        staging = core.staging if core.staging is not None and core.staging.available else None
        return self.profile.capabilities(
            executables=core.platform.executable_kinds(),
            max_compute={
                "cores": largest.cores,
                "memory": largest.memory_gib,
                "storage": largest.storage_gib,
            },
            accelerators={k: v for k, v in dict(largest.accelerators).items() if v},
            policies=core.policies.names,
            interactivity=interactivity,
            extensions=[
                "jeb:starts",
                "jeb:accelerators",
                "jeb:parameters",
                "jeb:name",
                *(["jeb:interactivity"] if interactivity else []),
                *(["jeb:staging"] if staging is not None else []),
                "jeb:prediction",
                *extensions,
            ],
            **{"jeb:policies": core.policies.summaries()},
            **({"jeb:staging": staging.capabilities()} if staging is not None else {}),
            **extra,
        )

    async def health(self) -> Health:
        return Health(
            status="ok", platform=self.core.platform.name, bookings=len(self.core.timeline)
        )

    async def gauges(self) -> Gauges:
        return Gauges(
            sessions=self.core.ledger.count_by_phase(),
            bookings=len(self.core.timeline),
        )

    async def archive(self, identity: Identity, query: ArchiveQuery) -> ArchivePage:
        """Read and render in a thread: a large export must not stall the broker."""
        core = self.core

        def build() -> ArchivePage:
            rows, total = core.archive_page(identity, query.where, query.user)
            transfers = core.archive.transfers_of([row.uuid for row in rows])
            if query.format == "json":
                items = [detailed(row, transfers.get(row.uuid, ())) for row in rows]
                return ArchivePage(total, items=items)
            flat = [record(row, transfers.get(row.uuid, ())) for row in rows]
            return ArchivePage(
                total, data=to_csv(flat) if query.format == "csv" else to_parquet(flat)
            )

        return await asyncio.to_thread(build)

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self.reconciler.start()

    async def close(self) -> None:
        await self.reconciler.stop()
        if self.core.staging_runner is not None:
            await self.core.staging_runner.close()
        await self.core.policies.close()
        await self.core.platform.close()


def view_of(row: SessionRow) -> SessionView:
    """The wire-independent view of a ledger row."""
    return SessionView(
        uuid=row.uuid,
        phase=Phase(row.phase),
        name=row.name,
        created=row.created,
        modified=row.modified,
        expires=row.expires,
        start=row.start,
        end=row.end,
        preparation=timedelta(seconds=row.preparation_s),
        resources=row_resources(row),
        request=row.request,
        messages=row.messages or [],
        connectors=row.connectors or [],
        outputs=row.outputs or {},
        estimate=dict(row.estimate) if row.estimate else None,
        staging=dict(row.staging) if row.staging else None,
        prediction=dict(row.prediction) if row.prediction else None,
    )


__all__ = ["CoreService", "view_of"]
