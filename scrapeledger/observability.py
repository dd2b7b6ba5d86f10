"""Prometheus metrics and the health endpoints every process serves.

The edge serves ``/metrics`` on its own Tornado port; the processors, which have no HTTP server of
their own, start :class:`HealthServer` on ``METRICS_HOST:METRICS_PORT`` (loopback and one default
port per processor, so all run side by side on one machine) with ``/healthz`` (the process is
alive), ``/readyz`` (connected to the broker and assigned partitions) and ``/metrics``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from .errors import ConfigError
from .settings import Settings

log = logging.getLogger(__name__)

JOBS_SUBMITTED = Counter("scrapeledger_jobs_submitted", "Jobs accepted by an edge (durable in the ledger)")
JOBS_FINISHED = Counter(
    "scrapeledger_jobs_finished", "Jobs that reached a terminal status, by status", ["status"]
)
ATTEMPTS = Counter(
    "scrapeledger_fetch_attempts", "Fetch attempts by outcome (ok or an error code)", ["outcome"]
)
FETCH_SECONDS = Histogram(
    "scrapeledger_fetch_seconds", "Duration of one fetch attempt, redirects included",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
JOB_SECONDS = Histogram(
    "scrapeledger_job_seconds", "Submit-to-terminal time of a job, from its ledger events",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
REPLAYS_SKIPPED = Counter(
    "scrapeledger_replayed_attempts_skipped",
    "Fetch triggers seen again after their attempt's outcome was recorded (not refetched)",
)
IN_FLIGHT = Gauge("scrapeledger_fetches_in_flight", "Fetch attempts running in this scraper")
WS_CONNECTIONS = Gauge("scrapeledger_websocket_connections", "Open WebSocket connections on this edge")
RESULTS_SENT = Counter("scrapeledger_results_sent", "Result frames sent to clients by this edge")
EVENTS = Counter("scrapeledger_events_processed", "Ledger records processed", ["processor"])
POISON = Counter("scrapeledger_poison_records", "Records that did not decode", ["processor"])
CONSUMER_LAG = Gauge(
    "scrapeledger_consumer_lag", "Records behind the end of the input topic (where known)",
    ["group"],
)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


class HealthServer:
    """A tiny threaded HTTP server: ``/healthz``, ``/readyz`` and ``/metrics``."""

    def __init__(self, port: int, ready: Callable[[], bool], name: str, host: str = "127.0.0.1") -> None:
        """Serve on ``host:port``; ``port=0`` serves nothing (metrics off). A port that is taken
        raises :class:`ConfigError` naming it and the setting to change, not a bare OSError."""
        ready_check = ready

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._send(200, b"ok\n", "text/plain")
                elif self.path == "/readyz":
                    ok = _safe(ready_check)
                    self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n", "text/plain")
                elif self.path == "/metrics":
                    body, ctype = render()
                    self._send(200, body, ctype)
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # probes every few seconds are not news

        self.port = port
        self._server: ThreadingHTTPServer | None = None
        if port == 0:
            log.info("%s: health and metrics server off (METRICS_PORT=0)", name)
            return
        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(
                f"{name}: the metrics port {host}:{port} is not available ({exc.strerror}); "
                "set METRICS_PORT to a free port, or METRICS_PORT=0 to turn the metrics server off"
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)
        self._thread.start()
        log.info("%s: health and metrics on port %d (%s)", name, self.port, host)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:
        return False


class LagReporter:
    """Every ``interval`` seconds, set ``scrapeledger_consumer_lag`` for a group on the ledger.

    Lag = end offsets minus the group's committed offsets, asked of the broker with a separate
    client, so the processing thread is never involved.
    """

    def __init__(self, settings: Settings, name: str, interval: float = 5.0) -> None:
        self.settings = settings
        self.group = settings.group(name)
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, name="lag", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from .topics import LEDGER

        topic = self.settings.topic(LEDGER)
        consumer = Consumer({"bootstrap.servers": self.settings.bootstrap_servers,
                             "group.id": self.group, "enable.auto.commit": False, "log_level": 0})
        try:
            while not self._stop.wait(self._interval):
                try:
                    meta = consumer.list_topics(topic, timeout=5).topics[topic]
                    parts = [TopicPartition(topic, p) for p in meta.partitions]
                    committed = consumer.committed(parts, timeout=5)
                    lag = 0
                    for tp in committed:
                        low, high = consumer.get_watermark_offsets(tp, timeout=5, cached=False)
                        lag += high - (tp.offset if tp.offset >= 0 else low)
                    CONSUMER_LAG.labels(self.group).set(lag)
                except Exception as exc:
                    log.debug("lag not known: %r", exc)
        finally:
            consumer.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
