"""``GET /metrics``: request counters and latencies the web layer measures, and the service's
gauges (:class:`~eb_broker.service.Gauges`), in the Prometheus text format."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from eb_sdk.model import Phase

from ..service import Gauges

#: A downstream circuit's state as a number (``eb_downstream_circuit``).
CIRCUIT_STATES = {"closed": 0, "half-open": 1, "open": 2}


class Metrics:
    """The instruments of one web application (a registry of its own, so several brokers in
    one process do not mix their figures)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "eb_http_requests",
            "HTTP requests",
            ["method", "handler", "status"],
            registry=self.registry,
        )
        self.offer_latency = Histogram(
            "eb_offer_seconds", "Time to compute and store an offer set", registry=self.registry
        )
        self.sessions = Gauge("eb_sessions", "Sessions by phase", ["phase"], registry=self.registry)
        self.bookings = Gauge(
            "eb_timeline_entries", "Bookings and holds on the timeline", registry=self.registry
        )
        self.downstream = Gauge(
            "eb_downstream_circuit",
            "Aggregators: each broker's circuit (0 closed, 1 half-open, 2 open)",
            ["broker"],
            registry=self.registry,
        )

    def request_finished(self, method: str, handler: str, status: int) -> None:
        self.requests.labels(method, handler, str(status)).inc()

    def render(self, gauges: Gauges) -> bytes:
        """The text format, with the gauges set from ``gauges`` first."""
        for phase in Phase:
            self.sessions.labels(phase.value).set(gauges.sessions.get(phase.value, 0))
        if gauges.bookings is not None:
            self.bookings.set(gauges.bookings)
        for broker, state in gauges.circuits.items():
            self.downstream.labels(broker).set(CIRCUIT_STATES[state])
        return generate_latest(self.registry)
