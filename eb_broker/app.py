"""``eb-broker``: the Execution Broker service (a traitlets application on tornado)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from tornado import httpserver, web
from traitlets import Bool, Dict, Float, Int, List, Unicode, default
from traitlets.config import Application, catch_config_error

from eb_sdk._version import __version__
from eb_sdk.model.times import parse_instant

from .aggregate import (
    AGGREGATE,
    AggregatePlatform,
    Aggregator,
    AggregatorService,
    AggregatorSettings,
)
from .auth import AUTHENTICATORS, Authenticator
from .configuration import config_entries
from .core import BrokerCore, Settings
from .core_service import CoreService
from .ledger import Ledger, make_engine, migrate
from .ledger.proxies import ProxyLedger
from .platforms import available_platforms, load_platform
from .policies import available_policies, builtin_policy_classes, make_chain
from .prediction import Predictions
from .scheduling import CapacityPeriod, Resources
from .service import BrokerService, Profile
from .staging import DataStaging
from .staging.classes import staging_classes
from .translate import Limits
from .web.application import make_app
from .web.base import DRAIN_FACTOR

log = logging.getLogger("eb_broker")


def _local_timezone() -> str:
    tz = os.environ.get("TZ")
    if tz:
        return tz
    try:
        link = os.readlink("/etc/localtime")
        return link.split("zoneinfo/", 1)[1]
    except (OSError, IndexError):
        return "UTC"


class EBBroker(Application):
    """An Execution Broker for one compute platform."""

    name = "eb-broker"
    version = __version__
    description = (
        "Answers 'when, and where, can I run this?' for one platform: offers from its capacity, "
        "bookings in a durable ledger, and sessions run by a platform plugin."
    )

    aliases = {
        "ip": "EBBroker.ip",
        "port": "EBBroker.port",
        "db-url": "EBBroker.db_url",
        "platform": "EBBroker.platform",
        "base-url": "EBBroker.base_url",
        "config": "EBBroker.config_file",
        "log-level": "Application.log_level",
    }
    flags = {
        "generate-config": (
            {"EBBroker": {"generate_config": True}},
            "Write a default configuration file (eb_broker_config.py) and exit.",
        ),
    }

    ip = Unicode("127.0.0.1", config=True, help="Address to listen on.")
    port = Int(8082, config=True, help="Port to listen on.")
    base_url = Unicode(
        "/", config=True, help="URL prefix of every endpoint (behind a proxy or as a hub service)."
    )
    public_url = Unicode(
        "",
        config=True,
        help="Scheme and host clients use to reach us (for Location headers); default: the "
        "request's own.",
    )
    db_url = Unicode(
        "sqlite:///eb_broker.sqlite",
        config=True,
        help="Ledger database URL: sqlite:///path (default, WAL) or postgresql://user@host/db.",
    )
    platform = Unicode(
        "local",
        config=True,
        help="Platform plugin: an entry point name of group eb_broker.platforms or module:Class; "
        f"'{AGGREGATE}' makes this broker an aggregator of others (settings: Aggregator.*).",
    )
    broker_name = Unicode(
        socket.gethostname(), config=True, help="The broker's name, shown with its offers."
    )
    config_file = Unicode("", config=True, help="A configuration file to load (Python or JSON).")
    generate_config = Bool(False, config=True, help="Write the default config file and exit.")
    work_dir = Unicode(
        "eb-work", config=True, help="Where sessions keep their files (outputs, logs)."
    )
    timezone = Unicode(config=True, help="The time zone users of this broker think in.")

    @default("log_level")
    def _log_level_default(self) -> int:
        return logging.INFO

    @default("timezone")
    def _timezone_default(self) -> str:
        return _local_timezone()

    offer_expiry = Float(
        300.0, config=True, help="Seconds an offer stays valid and holds capacity."
    )
    max_offers = Int(4, config=True, help="At most this many offers per request.")
    offer_step = Float(
        3600.0, config=True, help="Seconds between offered start times within a window."
    )
    hold_offers = Bool(
        True, config=True, help="Offers hold their capacity until they expire (as the spec says)."
    )
    horizon_days = Float(14.0, config=True, help="How far ahead (days) sessions can be booked.")
    max_duration_hours = Float(168.0, config=True, help="The longest session (hours).")
    default_duration_hours = Float(1.0, config=True, help="Duration when a request gives none.")
    default_cores = Int(1, config=True, help="Cores when a request gives none.")
    default_memory_gib = Int(1, config=True, help="Memory (GiB) when a request gives none.")
    max_cores = Int(0, config=True, help="Most cores one session may have (0: the platform's).")
    max_memory_gib = Int(
        0, config=True, help="Most memory one session may have (0: the platform's)."
    )
    max_body_size = Int(1024 * 1024, config=True, help="Largest request body in bytes.")
    reconcile_interval = Float(1.0, config=True, help="Seconds between reconcile passes.")
    authenticators = List(
        Unicode(),
        ["token-file"],
        config=True,
        help=f"Authenticators tried in order; names: {', '.join(AUTHENTICATORS)}.",
    )
    admin_users = List(Unicode(), [], config=True, help="Users who see every session.")
    policies = List(
        Unicode(),
        [],
        config=True,
        help="Policies asked for every request, in order (entry point group eb_broker.policies "
        f"or module:Class); shipped: {', '.join(available_policies())}. See docs/policies.md.",
    )
    interactivity_bandwidth_mbit = Float(
        0.0,
        config=True,
        help="Bandwidth (Mbit/s) users can count on between them and a session here. Requests "
        "whose jeb:interactivity needs more get NO. 0: not known, not checked.",
    )
    interactivity_latency_ms = Float(
        0.0,
        config=True,
        help="Round-trip latency (ms) users see to sessions here. Requests whose "
        "jeb:interactivity allows less get NO. 0: not known, not checked.",
    )
    capacity_periods = List(
        Dict(),
        [],
        config=True,
        help="Times when the capacity differs from the platform's (maintenance windows, "
        "pledged shares). Each item: {'start': ISO instant or None, 'end': ISO instant or None, "
        "'cores': N, 'memory_gib': N, 'storage_gib': N, 'accelerators': {'gpu:A100': N}}; the "
        "capacity in force within [start, end), dimensions not given keep the platform's value.",
    )

    # Set below the class (it names itself); --help-all and --generate-config add every
    # platform plugin (documented_classes).
    classes: list[type[Any]] = []

    #: What answers the API: a broker's own core, or an aggregator (``--platform aggregate``).
    service: BrokerService
    web_app: web.Application

    @catch_config_error
    def initialize(self, argv: Any = None) -> None:
        super().initialize(argv)
        if self.generate_config:
            return
        if self.config_file:
            self.load_config_file(self.config_file)
        self.init_broker()

    def init_broker(self) -> None:
        """Create the ledger, the service and the web app (no sockets yet)."""
        engine = make_engine(self.db_url)
        migrate(engine)
        if self.platform == AGGREGATE:
            self.service = self._aggregator(engine)
        else:
            self.service = self._broker(engine)
        self.web_app = make_app(
            self.service,
            authenticators=self._authenticators(),
            base_url=self.base_url,
            public_url=self.public_url,
            max_body_size=self.max_body_size,
            title=f"Execution Broker ({self.broker_name})",
            log=self.log,
        )

    def _profile(self, platform: str) -> Profile:
        return Profile(
            name=self.broker_name,
            platform=platform,
            timezone=self.timezone,
            offer_expiry=timedelta(seconds=self.offer_expiry),
            max_offers=self.max_offers,
            max_duration=timedelta(hours=self.max_duration_hours),
        )

    def _broker(self, engine: Engine) -> CoreService:
        """A broker for one platform: its core over the ledger, and the reconciler."""
        platform_cls = load_platform(self.platform)
        platform = platform_cls(parent=self, log=self.log)
        if hasattr(platform, "work_dir") and "work_dir" not in self.config.get(
            platform_cls.__name__, {}
        ):
            platform.work_dir = self.work_dir
        capacity = platform.capacity().base
        predictions = Predictions(parent=self, log=self.log)
        staging = DataStaging(
            root=platform.staging_dir(),
            predictions=predictions,
            platform_name=platform.name,
            parent=self,
            log=self.log,
        )
        limits = Limits(
            max_resources=type(capacity)(
                cores=min(capacity.cores, self.max_cores) if self.max_cores else capacity.cores,
                memory_gib=(
                    min(capacity.memory_gib, self.max_memory_gib)
                    if self.max_memory_gib
                    else capacity.memory_gib
                ),
                accelerators=capacity.accelerators,
                storage_gib=capacity.storage_gib or staging.room_gib,
            ),
            default_cores=self.default_cores,
            default_memory_gib=self.default_memory_gib,
            default_duration=timedelta(hours=self.default_duration_hours),
            max_duration=timedelta(hours=self.max_duration_hours),
            horizon=timedelta(days=self.horizon_days),
            bandwidth_mbit=self.interactivity_bandwidth_mbit or None,
            latency_ms=self.interactivity_latency_ms or None,
        )
        core = BrokerCore(
            ledger=Ledger(engine),
            platform=platform,
            limits=limits,
            settings=Settings(
                name=self.broker_name,
                offer_expiry=timedelta(seconds=self.offer_expiry),
                max_offers=self.max_offers,
                step=timedelta(seconds=self.offer_step),
                hold_offers=self.hold_offers,
                admin_users=frozenset(self.admin_users),
            ),
            policies=make_chain(self.policies, parent=self, log=self.log),
            work_dir=os.path.abspath(self.work_dir),
            capacity_periods=parse_capacity_periods(self.capacity_periods, capacity),
            staging=staging,
            predictions=predictions,
        )
        core.housekeeping()
        core.load()
        return CoreService(core, self._profile(platform.name), self.reconcile_interval)

    def _aggregator(self, engine: Engine) -> AggregatorService:
        """An aggregator: the same API, answered by the brokers below (docs/aggregator.md).

        Its settings are ``c.Aggregator.*``; a configuration with ``c.AggregatePlatform.*``
        (the earlier name) is read through that class, which also reads ``c.Aggregator.*``.
        """
        config_cls = AggregatePlatform if self.config.get("AggregatePlatform") else Aggregator
        config = config_cls(parent=self, log=self.log)
        return AggregatorService(
            ledger=ProxyLedger(engine),
            brokers=config.downstream(),
            settings=AggregatorSettings(
                name=self.broker_name,
                max_offers=self.max_offers,
                offer_expiry=timedelta(seconds=self.offer_expiry),
                admin_users=frozenset(self.admin_users),
                default_duration=timedelta(hours=self.default_duration_hours),
                default_cores=self.default_cores,
                default_memory_gib=self.default_memory_gib,
            ),
            profile=self._profile(AGGREGATE),
            patience=config.patience(),
            policies=make_chain(self.policies, parent=self, log=self.log),
        )

    def _authenticators(self) -> list[Authenticator]:
        auth: list[Authenticator] = []
        for name in self.authenticators:
            if name not in AUTHENTICATORS:
                raise ValueError(
                    f"unknown authenticator {name!r}; choose from {list(AUTHENTICATORS)}"
                )
            auth.append(AUTHENTICATORS[name](parent=self, log=self.log))
        return auth

    # -- run ------------------------------------------------------------------------------------

    def start(self) -> None:
        if self.generate_config:
            self.write_default_config()
            return
        # What was loaded (a broker's timeline) is long-lived: keep the cyclic GC from
        # re-scanning it on every full collection (that was a 100+ ms pause at 100k bookings).
        gc.collect()
        gc.freeze()
        asyncio.run(self.serve())

    def write_default_config(self) -> None:
        path = "eb_broker_config.py"
        if os.path.exists(path):
            raise SystemExit(f"{path} exists already; not overwriting it")
        self.classes = [type(self), *documented_classes()]
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(self.generate_config_file())
        print(f"wrote {path}")

    def print_help(self, classes: bool = False) -> None:
        # --help-all documents every platform's options too. Only then are all platform
        # plugins imported (the Kubernetes one takes half a second), not at every start.
        if classes:
            self.classes = [type(self), *documented_classes()]
        super().print_help(classes)

    async def serve(self) -> None:
        # Bodies are streamed into the handlers, which answer an oversize body with a 413
        # MessageItem: at once, unread, when Content-Length is beyond DRAIN_FACTOR x the limit;
        # otherwise after reading it to the end (dropped as it arrives). Tornado itself stops
        # reading a chunked body that goes on beyond DRAIN_FACTOR x the limit.
        server = httpserver.HTTPServer(
            self.web_app, xheaders=True, max_body_size=DRAIN_FACTOR * self.max_body_size
        )
        server.listen(self.port, self.ip)
        await self.service.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        self.log.info(
            "eb-broker %s: platform %s, ledger %s, listening on http://%s:%d%s",
            __version__,
            self.platform,
            self.db_url,
            self.ip,
            self.port,
            self.base_url,
        )
        await stop.wait()
        self.log.info("shutting down")
        server.stop()
        await self.service.close()


EBBroker.classes = [
    EBBroker,
    *AUTHENTICATORS.values(),
    *builtin_policy_classes(),
    *staging_classes(),
    Aggregator,
]


def documented_classes() -> list[type[Any]]:
    """The configurable classes ``--help-all`` and ``--generate-config`` describe: the
    authenticators, the shipped policies and every platform plugin that can be imported here."""
    classes: list[type[Any]] = [
        *AUTHENTICATORS.values(),
        *builtin_policy_classes(),
        *staging_classes(),
        Aggregator,
    ]
    for name in available_platforms():
        try:
            classes.append(load_platform(name))
        except (ValueError, ImportError) as exc:  # e.g. a plugin whose extras are missing
            log.debug("platform %s is not documented: %s", name, exc)
    return classes


def parse_capacity_periods(items: list[dict[str, Any]], base: Resources) -> list[CapacityPeriod]:
    """``EBBroker.capacity_periods`` entries as scheduling periods (clear errors on bad ones)."""
    periods = []
    keys = ("start", "end", "cores", "memory_gib", "storage_gib", "accelerators")
    for number, item in config_entries(items, keys, "capacity period"):
        try:
            start = parse_instant(item["start"]) if item.get("start") else None
            end = parse_instant(item["end"]) if item.get("end") else None
        except ValueError as exc:
            raise ValueError(f"capacity period {number}: {exc}") from None
        periods.append(
            CapacityPeriod(
                start,
                end,
                Resources(
                    cores=int(item.get("cores", base.cores)),
                    memory_gib=int(item.get("memory_gib", base.memory_gib)),
                    accelerators=dict(item.get("accelerators", dict(base.accelerators))),
                    storage_gib=int(item.get("storage_gib", base.storage_gib)),
                ),
            )
        )
    return periods


def main(argv: list[str] | None = None) -> None:
    """Console script entry point."""
    app = EBBroker.instance()
    try:
        app.initialize(argv)
    except ValueError as exc:  # a configuration mistake: one readable line, no traceback
        raise SystemExit(f"{app.name}: {exc}") from None
    app.start()


def aggregator_main(argv: list[str] | None = None) -> None:
    """``eb-aggregator``: ``eb-broker --platform=aggregate`` (see docs/aggregator.md)."""
    main(["--platform=aggregate", *(sys.argv[1:] if argv is None else argv)])
