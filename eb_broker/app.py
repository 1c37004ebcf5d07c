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

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from tornado import httpserver, web
from traitlets import Bool, Dict, Float, Int, List, Unicode, default
from traitlets.config import Application, catch_config_error

from eb_sdk._version import __version__
from eb_sdk.model import Capabilities, Phase
from eb_sdk.model.openapi import build_openapi
from eb_sdk.model.times import format_duration, parse_instant

from .aggregate import (
    AggregatePlatform,
    AggregatorCore,
    AggregatorSettings,
    Refresher,
    downstream_brokers,
)
from .auth import AUTHENTICATORS, Authenticator
from .configuration import config_entries
from .core import BrokerCore, Settings, view_of
from .ledger import Ledger, make_engine, migrate
from .ledger.proxies import ProxyLedger
from .lifecycle import Reconciler
from .platforms import available_platforms, load_platform
from .platforms.base import Platform
from .policies import available_policies, builtin_policy_classes, make_chain
from .prediction import Predictions
from .scheduling import CapacityPeriod, Resources
from .staging import DataStaging
from .staging.classes import staging_classes
from .translate import Limits, session_to_wire
from .web.handlers import DRAIN_FACTOR, BaseHandler, NotFoundHandler, offerset_wire, routes

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
        help="Platform plugin: an entry point name of group eb_broker.platforms or module:Class.",
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

    # runtime objects
    core: BrokerCore
    reconciler: Reconciler
    platform_obj: Platform
    #: In aggregator mode (``--platform aggregate``): the aggregator, also serving as ``core``.
    aggregator: AggregatorCore | None = None

    @catch_config_error
    def initialize(self, argv: Any = None) -> None:
        super().initialize(argv)
        if self.generate_config:
            return
        if self.config_file:
            self.load_config_file(self.config_file)
        self.init_broker()

    def init_broker(self) -> None:
        """Create the ledger, platform, core and web app (no sockets yet)."""
        engine = make_engine(self.db_url)
        migrate(engine)
        platform_cls = load_platform(self.platform)
        self.platform_obj = platform_cls(parent=self, log=self.log)
        if isinstance(self.platform_obj, AggregatePlatform):
            self._init_aggregator(engine, self.platform_obj)
            return
        if hasattr(self.platform_obj, "work_dir") and "work_dir" not in self.config.get(
            platform_cls.__name__, {}
        ):
            self.platform_obj.work_dir = self.work_dir
        capacity = self.platform_obj.capacity().base
        predictions = Predictions(parent=self, log=self.log)
        staging = DataStaging(
            root=self.platform_obj.staging_dir(),
            predictions=predictions,
            platform_name=self.platform_obj.name,
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
        self.core = BrokerCore(
            ledger=Ledger(engine),
            platform=self.platform_obj,
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
        self.core.housekeeping()
        self.core.load()
        # The loaded timeline is long-lived: keep the cyclic GC from re-scanning it on every
        # full collection (that was a 100+ ms pause at 100k bookings).
        gc.collect()
        gc.freeze()
        self.reconciler = Reconciler(self.core, self.reconcile_interval)
        self.core.platform.changed = self.reconciler.wake
        self._init_web()

    def _init_aggregator(self, engine: Any, platform: AggregatePlatform) -> None:
        """Aggregator mode: the same API, answered by the brokers below (docs/aggregator.md)."""
        own = Capabilities(
            name=self.broker_name,
            platform=platform.name,
            version=__version__,
            executables=[],
            max_compute={},
            timezone=self.timezone,
            offer_expiry=format_duration(timedelta(seconds=self.offer_expiry)),
            max_offers=self.max_offers,
            max_duration=format_duration(timedelta(hours=self.max_duration_hours)),
            extensions=["jeb:starts", "jeb:accelerators", "jeb:route"],
        )
        policies = make_chain(self.policies, parent=self, log=self.log)
        self.aggregator = AggregatorCore(
            ledger=ProxyLedger(engine),
            brokers=downstream_brokers(platform.brokers, os.environ),
            settings=AggregatorSettings(
                name=self.broker_name,
                deadline=platform.deadline,
                failure_threshold=platform.failure_threshold,
                cooldown=platform.cooldown,
                capabilities_ttl=platform.capabilities_ttl,
                max_offers=self.max_offers,
                offer_expiry=timedelta(seconds=self.offer_expiry),
                admin_users=frozenset(self.admin_users),
                default_duration=timedelta(hours=self.default_duration_hours),
                default_cores=self.default_cores,
                default_memory_gib=self.default_memory_gib,
                user_header=platform.user_header,
                groups_header=platform.groups_header,
                capabilities=Capabilities.model_validate(
                    {**own.dump(), "policies": policies.names, "jeb:policies": policies.summaries()}
                ),
            ),
            policies=policies,
        )
        self.core = self.aggregator  # type: ignore[assignment]  # the same methods, async
        self.reconciler = Refresher(self.aggregator)  # type: ignore[assignment]
        self._init_web()

    def _init_web(self) -> None:
        """Metrics, authenticators and the tornado application (brokers and aggregators)."""
        self._init_metrics()
        auth: list[Authenticator] = []
        for name in self.authenticators:
            if name not in AUTHENTICATORS:
                raise ValueError(
                    f"unknown authenticator {name!r}; choose from {list(AUTHENTICATORS)}"
                )
            auth.append(AUTHENTICATORS[name](parent=self, log=self.log))
        self.web_app = web.Application(
            [*routes(self.base_url), (r".*", NotFoundHandler)],
            eb_broker=self,
            eb_authenticators=auth,
            eb_max_body_size=self.max_body_size,
            eb_base_url="/" + self.base_url.strip("/") if self.base_url.strip("/") else "",
            eb_public_url=self.public_url,
            default_handler_class=NotFoundHandler,
            log_function=self._log_request,
        )

    # -- used by the handlers -----------------------------------------------------------------

    def reconciler_wake(self) -> None:
        self.reconciler.wake()

    def offerset_wire(self, handler: BaseHandler, offerset: Any, rows: Any) -> Any:
        timing = getattr(offerset, "server_timing", None)  # an aggregator's fan-out
        if timing:
            handler.set_header("Server-Timing", timing)
        return offerset_wire(handler, offerset, rows)

    def session_wire(self, handler: BaseHandler, row: Any) -> Any:
        """A session (ledger row, or an aggregator's proxied one) as the wire model."""
        url = handler.url_for(f"/sessions/{row.uuid}")
        if self.aggregator is not None:
            return self.aggregator.session_wire(url, row)
        return session_to_wire(
            view_of(row), url=url, platform=self.platform_obj.name, broker=self.core.settings.name
        )

    def capabilities(self) -> Any:
        """``GET /capabilities`` (a coroutine in aggregator mode: it may ask the brokers)."""
        if self.aggregator is not None:
            return self.aggregator.capabilities()
        limits = self.core.limits.max_resources
        extra = dict(self.platform_obj.capabilities())
        extensions = list(extra.pop("extensions", []))
        return Capabilities(
            name=self.broker_name,
            platform=self.platform_obj.name,
            version=__version__,
            executables=self.platform_obj.executable_kinds(),
            max_compute={
                "cores": limits.cores,
                "memory": limits.memory_gib,
                "storage": limits.storage_gib,
            },
            accelerators={k: v for k, v in dict(limits.accelerators).items() if v},
            timezone=self.timezone,
            offer_expiry=format_duration(timedelta(seconds=self.offer_expiry)),
            max_offers=self.max_offers,
            max_duration=format_duration(timedelta(hours=self.max_duration_hours)),
            policies=self.core.policies.names,
            interactivity=self.interactivity_checked(),
            extensions=[
                "jeb:starts",
                "jeb:accelerators",
                "jeb:parameters",
                "jeb:name",
                *(["jeb:interactivity"] if self.interactivity_checked() else []),
                *(["jeb:staging"] if self.core.staging and self.core.staging.available else []),
                "jeb:prediction",
                *extensions,
            ],
            **{"jeb:policies": self.core.policies.summaries()},
            **(
                {"jeb:staging": self.core.staging.capabilities()}
                if self.core.staging and self.core.staging.available
                else {}
            ),
            **extra,
        )

    def interactivity_checked(self) -> dict[str, float]:
        """The network figures requests' ``jeb:interactivity`` is checked against."""
        figures = {
            "bandwidth": self.interactivity_bandwidth_mbit,
            "latency": self.interactivity_latency_ms,
        }
        return {name: value for name, value in figures.items() if value}

    def health(self) -> dict[str, Any]:
        if self.aggregator is not None:
            return self.aggregator.health()
        return {
            "status": "ok",
            "version": __version__,
            "platform": self.platform_obj.name,
            "bookings": len(self.core.timeline),
        }

    def openapi(self, handler: BaseHandler) -> dict[str, Any]:
        if not hasattr(self, "_openapi"):
            self._openapi = build_openapi(
                server_url=handler.url_for(""), title=f"Execution Broker ({self.broker_name})"
            )
        return self._openapi

    # -- metrics --------------------------------------------------------------------------------

    def _init_metrics(self) -> None:
        self.registry = CollectorRegistry()
        self.m_requests = Counter(
            "eb_http_requests",
            "HTTP requests",
            ["method", "handler", "status"],
            registry=self.registry,
        )
        self.m_latency = Histogram(
            "eb_offer_seconds", "Time to compute and store an offer set", registry=self.registry
        )
        self.m_sessions = Gauge(
            "eb_sessions", "Sessions by phase", ["phase"], registry=self.registry
        )
        self.m_bookings = Gauge(
            "eb_timeline_entries", "Bookings and holds on the timeline", registry=self.registry
        )
        self.m_downstream = Gauge(
            "eb_downstream_circuit",
            "Aggregators: each broker's circuit (0 closed, 1 half-open, 2 open)",
            ["broker"],
            registry=self.registry,
        )

    def metrics_started(self, handler: BaseHandler) -> None:
        pass

    def metrics_finished(self, handler: BaseHandler) -> None:
        self.m_requests.labels(
            handler.request.method, type(handler).__name__, str(handler.get_status())
        ).inc()

    def observe_offer_latency(self, seconds: float) -> None:
        self.m_latency.observe(seconds)

    def update_gauges(self) -> None:
        counts = self.core.ledger.count_by_phase()
        for phase in Phase:
            self.m_sessions.labels(phase.value).set(counts.get(phase.value, 0))
        if self.aggregator is not None:
            for item in self.aggregator.broker_status():
                state = {"closed": 0, "half-open": 1, "open": 2}[item["state"]]
                self.m_downstream.labels(item["name"]).set(state)
            return
        self.m_bookings.set(len(self.core.timeline))

    def _log_request(self, handler: web.RequestHandler) -> None:
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        self.log.log(
            level,
            "%d %s %s %.1fms",
            status,
            handler.request.method,
            handler.request.uri,
            1000 * handler.request.request_time(),
        )

    # -- run ------------------------------------------------------------------------------------

    def start(self) -> None:
        if self.generate_config:
            self.write_default_config()
            return
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
        self.reconciler.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        self.log.info(
            "eb-broker %s: platform %s, ledger %s, listening on http://%s:%d%s",
            __version__,
            self.platform_obj.name,
            self.db_url,
            self.ip,
            self.port,
            self.base_url,
        )
        await stop.wait()
        self.log.info("shutting down")
        server.stop()
        await self.reconciler.stop()
        runner = getattr(self.core, "staging_runner", None)
        if runner is not None:
            await runner.close()
        await self.core.policies.close()
        await self.platform_obj.close()


EBBroker.classes = [
    EBBroker,
    *AUTHENTICATORS.values(),
    *builtin_policy_classes(),
    *staging_classes(),
]


def documented_classes() -> list[type[Any]]:
    """The configurable classes ``--help-all`` and ``--generate-config`` describe: the
    authenticators, the shipped policies and every platform plugin that can be imported here."""
    classes: list[type[Any]] = [
        *AUTHENTICATORS.values(),
        *builtin_policy_classes(),
        *staging_classes(),
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
