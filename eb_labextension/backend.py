"""What the ``/eb/`` handlers do, with the brokers, through :mod:`eb_sdk.aio`.

The brokers and their credentials are the SDK's: ``ExecutionBrokerLab.brokers`` when set,
else what the server's own environment configures (``EB_BROKERS``/``EB_TOKEN``,
``~/.config/eb/brokers.yaml``, the JupyterHub service in a single-user server). Tokens stay
in this process; the browser only ever sees :mod:`.views`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from traitlets import Float, Int, List, Unicode
from traitlets.config import Configurable

from eb_sdk import aio
from eb_sdk._config import Broker, BrokerSpec, resolve_brokers
from eb_sdk._errors import ConfigError, InvalidRequest, NotFound
from eb_sdk.builders import Compute, Notebook
from eb_sdk.offers import AsyncOffer

from .offerstore import OfferStore
from .views import (
    LISTED_PHASES,
    broker_view,
    offer_view,
    offers_view,
    session_view,
    sessions_view,
)

__all__ = ["Backend", "ExecutionBrokerLab", "RunForm"]


class ExecutionBrokerLab(Configurable):
    """Settings of the JupyterLab extension's server half (``c.ExecutionBrokerLab.*``)."""

    brokers = List(
        Unicode(),
        help="""The brokers to ask, as ``name=url`` entries or names of configured brokers.
        Empty (the default): every broker the SDK finds in the server's environment
        (EB_BROKERS, ~/.config/eb/brokers.yaml, the JupyterHub service). Credentials always
        come from the SDK's configuration, never from the browser.""",
    ).tag(config=True)
    request_timeout = Float(
        20.0,
        help="Seconds to wait for the brokers' answers before showing those that came.",
    ).tag(config=True)
    offer_sets = Int(
        20,
        help="""How many offer sets to remember, so that accepting one offer rejects the
        others of its request. Older sets can still be accepted, without that.""",
    ).tag(config=True)


class RunForm:
    """The "Run this notebook…" dialog's fields, checked (:class:`InvalidRequest` if not)."""

    def __init__(self, data: Mapping[str, Any], root: Path | None) -> None:
        self.path = str(data.get("path") or "").strip()
        self.notebook = _notebook_file(self.path, root)
        self.cores = _number(data, "cores", 1, int)
        self.memory = _number(data, "memory", 1, int)
        self.gpus = _number(data, "gpus", 0, int, minimum=0)
        self.duration = str(data.get("duration") or "").strip()
        self.start = str(data.get("start") or "").strip()
        if not self.duration:
            raise InvalidRequest("duration: say how long, e.g. '30 min' or '2 h'")
        if not self.start:
            raise InvalidRequest("when: say when, e.g. 'now' or 'within 10 min'")
        self.tz = _zone(str(data.get("tz") or "").strip())

    def compute(self) -> Any:
        return Compute(cores=self.cores, memory=f"{self.memory}GiB", gpus=self.gpus or None)

    def describe(self) -> str:
        gpus = f", {self.gpus} GPU" if self.gpus else ""
        return (
            f"{self.path}: {self.cores} core{'s' if self.cores != 1 else ''}, "
            f"{self.memory} GiB{gpus}, {self.duration}, {self.start}"
        )


def _number(
    data: Mapping[str, Any], key: str, default: float, kind: type, *, minimum: float = 1
) -> Any:
    raw = data.get(key, default)
    try:
        value = kind(raw)
        whole = kind is not int or float(raw) == value
    except (TypeError, ValueError):
        raise InvalidRequest(f"{key}: expected a number, not {raw!r}") from None
    if not whole:
        raise InvalidRequest(f"{key}: expected a whole number, not {raw!r}")
    if value < minimum:
        raise InvalidRequest(f"{key}: must be at least {minimum:g}, not {raw!r}")
    return value


def _zone(name: str) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(f"tz: {name!r} is not a time zone name") from None


def _notebook_file(path: str, root: Path | None) -> Path:
    """The notebook's file for a path relative to the server's root, checked to be inside."""
    if root is None:
        raise InvalidRequest("this server's notebooks are not files a broker could read")
    if not path.endswith(".ipynb"):
        raise InvalidRequest(f"path: {path!r} is not a notebook (.ipynb)")
    base = root.resolve()
    file = (base / path.lstrip("/")).resolve()
    if not file.is_relative_to(base):
        raise InvalidRequest(f"path: {path!r} is outside the server's root")
    if not file.is_file():
        raise InvalidRequest(f"path: {path!r} does not exist (save the notebook first)")
    return file


class Backend:
    """The handlers' one collaborator: brokers, sessions, offers (kept in an OfferStore)."""

    def __init__(self, config: ExecutionBrokerLab, root: Path | None) -> None:
        self.config = config
        self.root = root
        self.store = OfferStore(config.offer_sets)

    @property
    def spec(self) -> BrokerSpec | None:
        return list(self.config.brokers) or None

    def broker(self, name: str) -> Broker:
        """A configured broker by name (the browser names brokers, never gives URLs)."""
        for broker in resolve_brokers(self.spec):
            if broker.name == name:
                return broker
        raise NotFound(f"no broker named {name!r} is configured")

    # -- lists -------------------------------------------------------------------------------

    async def brokers(self) -> dict[str, Any]:
        try:
            found = await aio.brokers(self.spec, timeout=self.config.request_timeout)
        except ConfigError as exc:
            return {"brokers": [], "problem": str(exc)}
        return {"brokers": [broker_view(b) for b in found], "problem": ""}

    async def sessions(self, finished_hours: float) -> dict[str, Any]:
        try:
            found = await aio.sessions(
                sorted(LISTED_PHASES), brokers=self.spec, timeout=self.config.request_timeout
            )
        except ConfigError as exc:
            return {"sessions": [], "warnings": [], "problem": str(exc)}
        return {
            "sessions": sessions_view(found, self.root, finished_hours=finished_hours),
            "warnings": [str(w) for w in found.warnings],
            "problem": "",
        }

    async def cancel(self, broker: str, uuid: str) -> dict[str, Any]:
        session = await aio.session(uuid, brokers=[self.broker(broker)])
        await session.cancel()
        return {"session": session_view(session, self.root)}

    # -- offers ------------------------------------------------------------------------------

    async def ask(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Every broker's offers for a notebook of this server (the SDK's phrases)."""
        form = RunForm(data, self.root)
        offers = await aio.request(
            Notebook(form.notebook),
            compute=form.compute(),
            duration=form.duration,
            start=form.start,
            name=form.notebook.name,
            brokers=self.spec,
            timeout=self.config.request_timeout,
            tz=form.tz,
        )
        entry = self.store.add(form.describe(), offers)
        return offers_view(entry.id, entry.what, offers)

    async def _offer(self, set_id: str, uuid: str, broker: str) -> AsyncOffer:
        entry = self.store.get(set_id)
        offer = entry.find(uuid) if entry else None
        if offer is not None:
            return offer
        return await aio.find_offer(uuid, brokers=[self.broker(broker)])

    async def accept(self, set_id: str, uuid: str, broker: str) -> dict[str, Any]:
        """Book one offer; the others of its request are rejected (when the set is known)."""
        offer = await self._offer(set_id, uuid, broker)
        session = await offer.accept()
        entry = self.store.get(set_id)
        return {
            "session": session_view(session, self.root),
            "offers": offers_view(entry.id, entry.what, entry.offers) if entry else None,
        }

    async def reject(self, set_id: str, uuid: str, broker: str) -> dict[str, Any]:
        offer = await self._offer(set_id, uuid, broker)
        await offer.reject()
        return {"offer": offer_view(offer)}
