"""One typed settings object, read from the environment.

The environment variable names are a contract (ARCHITECTURE.md, "Contracts"), so each field names
its variable explicitly instead of deriving it from a prefix.
"""

from __future__ import annotations

import socket
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

METRICS_PORTS = {"state": 9100, "validator": 9101, "scraper": 9102}
"""Each processor's default metrics port (also what ``scrapeledger up`` gives them)."""


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Every knob of every component. Build with ``Settings()``; override in tests by keyword."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    # --- Kafka -------------------------------------------------------------------------------
    bootstrap_servers: str = Field("127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"))
    topic_prefix: str = Field("", validation_alias=_env("SCRAPELEDGER_TOPIC_PREFIX"))
    partitions: int = Field(6, ge=1, validation_alias=_env("SCRAPELEDGER_PARTITIONS"))
    delivery_partitions: int = Field(
        16, ge=1, validation_alias=_env("SCRAPELEDGER_DELIVERY_PARTITIONS"),
        description="Partitions of the deliveries topic; each edge pod reads the one its id hashes to.",
    )
    replication_factor: int = Field(1, ge=1, validation_alias=_env("SCRAPELEDGER_REPLICATION_FACTOR"))
    broker_wait_s: float = Field(
        300.0, gt=0, validation_alias=_env("SCRAPELEDGER_BROKER_WAIT_S"),
        description="How long a process waits for the broker at start-up before giving up.",
    )
    broker_outage_s: float = Field(
        600.0, gt=0, validation_alias=_env("SCRAPELEDGER_BROKER_OUTAGE_S"),
        description="How long a running process rides out a lost broker (retrying, rejoining) "
        "before it exits non-zero.",
    )
    stop_grace_s: float = Field(
        25.0, gt=0, validation_alias=_env("SCRAPELEDGER_STOP_GRACE_S"),
        description="How long a processor's stop (SIGTERM) may take before it exits without its "
        "final commit (the broker away); below Kubernetes' 30 s terminationGracePeriodSeconds.",
    )
    state_dir: str = Field("state", validation_alias=_env("SCRAPELEDGER_STATE_DIR"))
    commit_interval_s: float = Field(0.5, ge=0, validation_alias=_env("SCRAPELEDGER_COMMIT_INTERVAL_S"))
    linger_ms: float = Field(
        5.0, ge=0, validation_alias=_env("SCRAPELEDGER_LINGER_MS"),
        description="Producers' linger.ms: how long a record waits to share a request with others.",
    )

    # --- identity ------------------------------------------------------------------------------
    pod_name: str = Field(default_factory=socket.gethostname, validation_alias=_env("POD_NAME"))

    metrics_port: int | None = Field(
        None, ge=0, le=65535, validation_alias=_env("METRICS_PORT"),
        description="Processors' /healthz, /readyz and /metrics port (the edge uses EDGE_PORT); "
        "unset: one default per component (METRICS_PORTS), so all three run side by side on "
        "one machine; 0 turns the server off.",
    )
    metrics_host: str = Field(
        "127.0.0.1", validation_alias=_env("METRICS_HOST"),
        description="Address the processors' metrics server binds: loopback unless configured "
        "(containers set 0.0.0.0 so probes and Prometheus reach it).",
    )

    # --- edge ----------------------------------------------------------------------------------
    edge_port: int = Field(3001, ge=0, le=65535, validation_alias=_env("EDGE_PORT"))
    edge_max_frame_bytes: int = Field(
        64 * 1024, ge=1024, validation_alias=_env("EDGE_MAX_FRAME_BYTES")
    )
    edge_drain_s: float = Field(10.0, ge=0, validation_alias=_env("EDGE_DRAIN_S"))
    edge_ready_wait_s: float = Field(
        30.0, ge=0, validation_alias=_env("EDGE_READY_WAIT_S"),
        description="How long a WebSocket that connects while the edge is still connecting to "
        "Kafka is held before it is closed with 1013 (try again later).",
    )
    edge_reply_timeout_s: float = Field(
        30.0, gt=0, validation_alias=_env("EDGE_REPLY_TIMEOUT_S"),
        description="How long a keyed submit or a cancel waits for the state materializer's "
        "answer before the client is told to retry (HTTP 503, WebSocket submit_failed).",
    )
    edge_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("EDGE_ALLOWED_ORIGINS"),
        description="Browser origins allowed to open a WebSocket besides the edge's own "
        "(comma-separated, e.g. https://app.example; * allows any). Clients that send no "
        "Origin (scripts, the Python client) are always allowed.",
    )

    # --- edge limits (ws_edge/_limits.py; docs/configuration.md says why each default) ---------
    edge_max_connections: int = Field(
        10_000, ge=1, validation_alias=_env("EDGE_MAX_CONNECTIONS"),
        description="Open TCP connections on the edge's port; over it new ones get HTTP 503.",
    )
    edge_max_connections_per_address: int = Field(
        256, ge=0, validation_alias=_env("EDGE_MAX_CONNECTIONS_PER_ADDRESS"),
        description="Open connections per client address (0: no cap, e.g. behind a proxy).",
    )
    edge_reserved_connections: int = Field(
        16, ge=0, validation_alias=_env("EDGE_RESERVED_CONNECTIONS"),
        description="Connections over EDGE_MAX_CONNECTIONS for addresses holding none, plain "
        "HTTP only: health probes still answer at the cap.",
    )
    edge_header_timeout_s: float = Field(
        10.0, gt=0, validation_alias=_env("EDGE_HEADER_TIMEOUT_S"),
        description="How long a connection may take to send a whole request head (half-sent "
        "requests, idle handshakes, idle keep-alive connections).",
    )
    edge_max_jobs_per_connection: int = Field(
        1000, ge=1, validation_alias=_env("EDGE_MAX_JOBS_PER_CONNECTION"),
        description="Jobs (submitted or resumed) one connection may wait for at once.",
    )
    edge_max_queued_bytes: int = Field(
        32 * 1024 * 1024, ge=64 * 1024, validation_alias=_env("EDGE_MAX_QUEUED_BYTES"),
        description="Bytes of frames queued for a reader that does not keep up; over it the "
        "connection is closed with 1013 (the client resumes).",
    )
    edge_resumes_per_s: float = Field(
        20.0, gt=0, validation_alias=_env("EDGE_RESUMES_PER_S"),
        description="Resumes per connection per second, on average (token bucket).",
    )
    edge_resume_burst: int = Field(
        100, ge=1, validation_alias=_env("EDGE_RESUME_BURST"),
        description="Resumes one connection may send at once (a reconnect resumes every job).",
    )
    edge_attach_window_s: float = Field(
        300.0, gt=0, validation_alias=_env("EDGE_ATTACH_WINDOW_S"),
        description="A pod records ClientAttached (and ResultDelivered) at most once per job "
        "within this window; repeated resumes are answered from the last answer.",
    )

    edge_index_jobs: int = Field(
        20_000, ge=100, validation_alias=_env("EDGE_INDEX_JOBS"),
        description="Most jobs the dashboard's recent-jobs index holds per edge pod (the oldest "
        "by submit time are dropped first): bounds the edge's memory whatever the load.",
    )
    edge_index_window_s: float = Field(
        3600.0, gt=0, validation_alias=_env("EDGE_INDEX_WINDOW_S"),
        description="How far back in job-state the index starts reading when it is first used "
        "(on each pod, after each restart).",
    )

    # --- API keys (ws_edge/_auth.py; docs/security.md) ----------------------------------------
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, validation_alias=_env("SCRAPELEDGER_API_KEYS"),
        description="API keys, comma-separated, each KEY or NAME:KEY: any key turns "
        "authentication on (HTTP Authorization: Bearer, WebSocket the same or ?api_key=). Jobs "
        "belong to the key's owner: NAME, or key-<hash> for an unnamed key. Empty: read "
        "SCRAPELEDGER_API_KEYS_FILE; neither: no authentication.",
    )
    api_keys_file: str | None = Field(
        None, validation_alias=_env("SCRAPELEDGER_API_KEYS_FILE"),
        description="A file of API keys (one KEY or NAME:KEY a line, # comments), e.g. a mounted "
        "Secret; used when SCRAPELEDGER_API_KEYS is empty.",
    )
    edge_key_max_in_flight: int = Field(
        1000, ge=1, validation_alias=_env("EDGE_KEY_MAX_IN_FLIGHT"),
        description="Unfinished jobs one API key may have submitted through one edge pod; over "
        "it a submit is refused (HTTP 429, WebSocket rate_limited).",
    )
    edge_key_submits_per_s: float = Field(
        50.0, gt=0, validation_alias=_env("EDGE_KEY_SUBMITS_PER_S"),
        description="Submits per API key per second through one edge pod, on average (token "
        "bucket; a batch counts each job).",
    )
    edge_key_submit_burst: int = Field(
        200, ge=1, validation_alias=_env("EDGE_KEY_SUBMIT_BURST"),
        description="Submits one API key may make at once before EDGE_KEY_SUBMITS_PER_S applies.",
    )

    # --- scraper -------------------------------------------------------------------------------
    scraper_allow_private: bool = Field(False, validation_alias=_env("SCRAPER_ALLOW_PRIVATE"))
    scraper_max_attempts: int = Field(3, ge=1, validation_alias=_env("SCRAPER_MAX_ATTEMPTS"))
    scraper_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("SCRAPER_PROXIES")
    )
    scraper_concurrency: int = Field(64, ge=1, validation_alias=_env("SCRAPER_CONCURRENCY"))
    scraper_per_host: int = Field(16, ge=1, validation_alias=_env("SCRAPER_PER_HOST"))
    scraper_timeout_s: float = Field(20.0, gt=0, validation_alias=_env("SCRAPER_TIMEOUT_S"))
    scraper_max_redirects: int = Field(10, ge=0, validation_alias=_env("SCRAPER_MAX_REDIRECTS"))
    scraper_max_body_bytes: int = Field(
        5 * 1024 * 1024, ge=1024, validation_alias=_env("SCRAPER_MAX_BODY_BYTES")
    )
    scraper_backoff_base_s: float = Field(0.5, ge=0, validation_alias=_env("SCRAPER_BACKOFF_BASE_S"))
    scraper_backoff_max_s: float = Field(30.0, ge=0, validation_alias=_env("SCRAPER_BACKOFF_MAX_S"))

    scraper_format_threads: int = Field(
        2, ge=1, validation_alias=_env("SCRAPER_FORMAT_THREADS"),
        description="Threads that compute output formats (markdown, text, links, metadata) off "
        "the scraper's fetch loop.",
    )

    scraper_max_crashes: int = Field(
        2, ge=1, validation_alias=_env("SCRAPER_MAX_CRASHES"),
        description="How often an attempt running alone may die with the scraper process before "
        "the job is dead-lettered (scraper_crashed).",
    )

    scraper_max_header_bytes: int = Field(
        64 * 1024, ge=1024, validation_alias=_env("SCRAPER_MAX_HEADER_BYTES"),
        description="Largest response header block accepted; larger is a permanent "
        "headers_too_large failure (aiohttp also refuses one line over 8190 bytes or over 128 "
        "headers).",
    )

    # --- secrets -------------------------------------------------------------------------------
    secret_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, validation_alias=_env("SCRAPELEDGER_SECRET_KEYS"),
        description="Fernet keys that seal jobs' credentials, comma-separated, newest first: the "
        "first seals, every one opens (rotation). Empty: read SCRAPELEDGER_SECRET_KEYS_FILE.",
    )
    secret_keys_file: str | None = Field(
        None, validation_alias=_env("SCRAPELEDGER_SECRET_KEYS_FILE"),
        description="A file of Fernet keys (one a line, newest first), e.g. a mounted Secret. "
        "Unset: the local development key file under SCRAPELEDGER_CACHE_DIR, created on first use.",
    )
    secret_headers: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("SCRAPELEDGER_SECRET_HEADERS"),
        description="More request header names (comma-separated) sealed like Authorization, "
        "Cookie, Proxy-Authorization and X-Api-Key.",
    )

    # --- failure handling ----------------------------------------------------------------------
    max_processing_failures: int = Field(
        3, ge=1, validation_alias=_env("SCRAPELEDGER_MAX_PROCESSING_FAILURES"),
        description="How often a processor may raise on one ledger record before it dead-letters "
        "the job (processing_error) and moves on.",
    )
    faults: str = Field(
        "", validation_alias=_env("SCRAPELEDGER_FAULTS"),
        description="Fault injection for failure-path tests: comma-separated "
        "component:action:url-substring (action raise or kill). Empty in production.",
    )

    # --- results -------------------------------------------------------------------------------
    replay_window_s: float = Field(
        7 * 24 * 3600.0, gt=0, validation_alias=_env("SCRAPELEDGER_REPLAY_WINDOW_S"),
        description="How long finished jobs stay resumable; also the bodies topic's retention.",
    )
    inline_body_bytes: int = Field(
        0, ge=0, validation_alias=_env("SCRAPELEDGER_INLINE_BODY_BYTES"),
        description="Bodies up to this size ride inline in events instead of by reference.",
    )

    @field_validator(
        "scraper_proxies", "edge_allowed_origins", "secret_keys", "secret_headers", "api_keys",
        mode="before",
    )
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    def metrics_port_for(self, component: str) -> int:
        """``component``'s metrics port: ``METRICS_PORT`` if set, else its own default."""
        if self.metrics_port is not None:
            return self.metrics_port
        return METRICS_PORTS.get(component, 0)

    def topic(self, name: str) -> str:
        """The full topic name for a logical topic name."""
        return f"{self.topic_prefix}{name}"

    def group(self, name: str) -> str:
        """The full consumer group id: groups share the topic prefix so deployments never mix."""
        return f"{self.topic_prefix}{name}"
