"""Prometheus metrics of DESIGN §7, on a registry of their own (one per app, so tests can run
several apps in one process). Names carry the `order_bridge_` prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from service.store import Ledger

__all__ = ["Metrics"]

# `*_created` series double the exposition and no dashboard or alert here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

_PREFIX = "order_bridge_"
#: Webhook handling is sub-millisecond to a few ms; the tail matters for the shops' 5 s limit.
_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Sendcloud round trips and end-to-end latency (debounce included) span milliseconds to minutes.
_SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)


class Metrics:
    """Every metric the service exports; `registry` is what `/metrics` renders."""

    _answered: dict[tuple[str, str], Counter]

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.webhooks = Counter(
            _PREFIX + "webhooks", "Webhooks answered, by platform and outcome.", ["platform", "outcome"], registry=r
        )
        self._answered = {}
        self.webhook_duration = Histogram(
            _PREFIX + "webhook_duration_seconds", "Time to answer a webhook.", buckets=_FAST, registry=r
        )
        self.orders_pending = Gauge(_PREFIX + "orders_pending", "Orders buffered, not yet accepted.", registry=r)
        self.oldest_pending_age = Gauge(
            _PREFIX + "oldest_pending_age_seconds", "Age of the oldest order not yet accepted.", registry=r
        )
        self.batches = Counter(_PREFIX + "batches", "Batches sent to Sendcloud, by outcome.", ["outcome"], registry=r)
        self.batch_size = Histogram(
            _PREFIX + "batch_size", "Orders per batch sent.", buckets=(1, 2, 5, 10, 25, 50, 75, 99, 100), registry=r
        )
        self.sendcloud_requests = Counter(
            _PREFIX + "sendcloud_requests",
            "Requests to Sendcloud, by HTTP status (or timeout, connection_error).",
            ["status"],
            registry=r,
        )
        self.sendcloud_duration = Histogram(
            _PREFIX + "sendcloud_request_duration_seconds", "Sendcloud request round trip.", buckets=_SLOW, registry=r
        )
        self.orders_accepted = Counter(_PREFIX + "orders_accepted", "Orders Sendcloud accepted.", registry=r)
        self.orders_dead_lettered = Counter(
            _PREFIX + "orders_dead_lettered", "Orders that could not be sent, by reason.", ["reason"], registry=r
        )
        self.dead_letters_stored = Gauge(
            _PREFIX + "dead_letters_stored", "Dead letters currently held in memory.", registry=r
        )
        self.order_end_to_end = Histogram(
            _PREFIX + "order_end_to_end_seconds",
            "From webhook receipt to Sendcloud's acceptance.",
            buckets=_SLOW,
            registry=r,
        )

        self.store_write = Histogram(
            _PREFIX + "store_write_seconds",
            "Time a webhook waits for the store to commit its order (group commits included).",
            buckets=_FAST,
            registry=r,
        )
        self.flusher = Gauge(
            _PREFIX + "flusher",
            "1 while this process sends its store's orders to Sendcloud: always with one process, and "
            "with PostgreSQL while it holds the account's flusher lease (the sum over replicas is 1).",
            registry=r,
        )

    def export_ledger(self, read: Callable[[], Ledger]) -> None:
        """Export the store's conservation ledger as `order_versions_total{fate}`, read at each
        scrape: the store counts, the metric only shows (DESIGN §7)."""
        self.registry.register(_LedgerCollector(read))

    def webhook_answered(self, platform: str, outcome: str) -> Counter:
        """The `webhooks` counter child for one answer, resolved once per label pair (both
        labels come from fixed sets, so this cache is bounded)."""
        child = self._answered.get((platform, outcome))
        if child is None:
            child = self._answered[(platform, outcome)] = self.webhooks.labels(platform=platform, outcome=outcome)
        return child


class _LedgerCollector(Collector):
    """`order_bridge_order_versions_total{fate}`: order versions buffered (fate=accepted) and
    where each went — sent, superseded by a newer version, or dead_lettered."""

    def __init__(self, read: Callable[[], Ledger]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        ledger = self._read()
        family = CounterMetricFamily(
            _PREFIX + "order_versions",
            "Order versions buffered (fate=accepted) and where each went: sent, superseded by a newer "
            "version, or dead_lettered. accepted = sent + superseded + dead_lettered + orders_pending.",
            labels=["fate"],
        )
        for fate in ("accepted", "sent", "superseded", "dead_lettered"):
            family.add_metric([fate], getattr(ledger, fate))
        yield family
        letters = CounterMetricFamily(
            _PREFIX + "dead_letters_resolved",
            "Dead letters a person resolved through the admin API: replayed (the order went back to "
            "its lane, a new accepted version) or discarded.",
            labels=["how"],
        )
        for how in ("replayed", "discarded"):
            letters.add_metric([how], getattr(ledger, how))
        yield letters
