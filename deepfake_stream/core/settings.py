"""The one settings object.

Every setting is read from an environment variable and can be overridden by a command-line
flag of the same name: ``KAFKA_BOOTSTRAP_SERVERS`` is ``--kafka-bootstrap-servers``. Groups
are split by concern; each group owns an environment prefix, and the flag is always the
environment name lower-cased with dashes, so operators only ever learn one name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Backend = Literal["cpu", "gpu", "modal"]
"""The backends, defined once here (the core names their topics); ``schemas.BackendName`` is
this type."""
BACKENDS: tuple[Backend, ...] = get_args(Backend)

ROUTING_HEADROOM_BYTES = 65_536
"""Room a routed item (envelope, trace context, headers) needs beyond its input's bytes."""

_FROZEN = SettingsConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)


class KafkaSettings(BaseSettings):
    """The brokers, how the clients authenticate, and client tuning."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", **_FROZEN)

    bootstrap_servers: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma separated."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """Broker security protocol, passed through to the Kafka clients."""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    """SASL mechanism when the protocol is SASL_*."""
    sasl_username: str | None = None
    """SASL user name."""
    sasl_password: SecretStr | None = None
    """SASL password."""
    ssl_cafile: str | None = None
    """CA bundle that signs the brokers' certificates."""
    client_id: str = "deepfake-stream"
    """Client id prefix shown in broker logs and metrics."""
    group_prefix: str = "deepfake-stream"
    """Consumer groups are <prefix>.router, <prefix>.cpu, ...; change it to run two
    independent pipelines on one cluster."""
    producer_max_batch_bytes: int = Field(1_048_576, ge=16_384)
    """Producer batch size per partition. aiokafka's 16 KB default halves throughput with
    multi-KB texts, so this is raised to 1 MiB."""
    producer_linger_ms: int = Field(2, ge=0)
    """How long the producer waits to fill a batch before sending."""
    max_request_bytes: int = Field(4_194_304, ge=1_048_576)
    """Largest produce request; must exceed the largest message (a 100,000-character text is
    up to 400 KB of UTF-8)."""
    session_timeout_ms: int = Field(10_000, ge=3_000)
    """Consumer group session timeout: how fast a dead member is noticed."""
    max_poll_interval_ms: int = Field(300_000, ge=10_000)
    """Longest time between polls before the group evicts a slow member."""
    leave_group_on_stop: bool = True
    """Send LeaveGroup when a consumer stops, so its partitions move at once. `up` turns it
    off for the embedded broker: Tansu keeps a member that leaves during a rebalance as the
    group's leader, and the group then never assigns a partition again; a member that just
    goes silent is expired after session_timeout_ms instead. Keep it on for Apache Kafka."""
    probe_timeout_s: float = Field(3.0, gt=0, le=60)
    """How long commands wait for a broker to answer a Kafka metadata request before they
    stop with "no Kafka broker answers" (a TCP connect alone does not count)."""
    fetch_max_wait_ms: int = Field(20, ge=1, le=10_000)
    """Longest a fetch may wait at the broker for data. Tansu (the embedded broker) answers a
    waiting fetch only when this runs out, not when data arrives, so aiokafka's 500 ms
    default added up to 500 ms per hop; each idle consumer polls 1000/this times a second.
    This is the wait while a stage is busy; see fetch_idle_wait_ms."""
    fetch_idle_wait_ms: int = Field(300, ge=1, le=10_000)
    """The fetch wait of a stage that has read nothing for fetch_idle_after_ms: fewer polls
    (idle CPU of the stage and of the broker) at the price of up to this much latency for the
    first item after a quiet spell on Tansu (it answers a waiting fetch only when the wait
    runs out). Set it equal to fetch_max_wait_ms to turn the adaptation off."""
    fetch_idle_after_ms: int = Field(1_000, ge=0, le=600_000)
    """How long a stage reads nothing before it switches to fetch_idle_wait_ms."""


class TopicSettings(BaseSettings):
    """Topic names (deploy/kafka/topics.yaml defines their partitions and configs)."""

    model_config = SettingsConfigDict(env_prefix="TOPIC_", **_FROZEN)

    input: str = "detect.in"
    """Where upstream platforms publish input items."""
    backend_cpu: str = "detect.backend.cpu"
    """Routed items for the CPU worker group."""
    backend_gpu: str = "detect.backend.gpu"
    """Routed items for the GPU worker group."""
    backend_modal: str = "detect.backend.modal"
    """Routed items for the Modal bridge."""
    verdicts: str = "detect.verdicts"
    """Verdicts for moderation systems."""
    dlq: str = "detect.dlq"
    """Dead letters: original bytes plus dlq.* headers."""
    heartbeats: str = "detect.heartbeats"
    """Worker liveness announcements the router and workers read (see
    deepfake_stream/core/liveness.py)."""

    def backend(self, backend: Backend) -> str:
        return {"cpu": self.backend_cpu, "gpu": self.backend_gpu, "modal": self.backend_modal}[
            backend
        ]


class RedisSettings(BaseSettings):
    """The optional verdict cache and de-duplication."""

    model_config = SettingsConfigDict(env_prefix="REDIS_", **_FROZEN)

    url: str | None = None
    """Verdict cache and de-duplication; unset or unreachable means run without them."""
    key_prefix: str = "dfs:v1"
    """Namespace of every key (<prefix>:cache:..., <prefix>:published:...)."""
    timeout_s: float = Field(0.25, gt=0, le=10)
    """Longest one Redis call may take; a slower or failed call runs without Redis."""
    cache_ttl_s: int = Field(86_400, ge=1)
    """How long a cached score (per model version and text sha256) is kept."""
    published_ttl_s: int = Field(604_800, ge=1)
    """How long a published verdict's (id, model_version) is remembered for de-duplication;
    keep it above detect.in's retention (7 days) so a re-read item is still recognised."""
    retry_max_s: float = Field(30.0, gt=0)
    """Longest back-off between reconnection attempts while Redis is unreachable."""


class ModalSettings(BaseSettings):
    """The Modal bridge's calls to the deployed Modal app."""

    model_config = SettingsConfigDict(env_prefix="MODAL_", **_FROZEN)

    app_name: str = "deepfake-stream"
    """The deployed Modal app the Modal bridge calls."""
    timeout_s: float = Field(30.0, gt=0)
    """Longest the Modal bridge waits for one micro-batch (all its sub-batches, a cold start
    included) before handing the batch to the next backend."""
    max_inflight: int = Field(4, ge=1, le=256)
    """Most Modal calls the bridge has in flight at once (per model)."""
    max_batch: int = Field(32, ge=1, le=4096)
    """Most texts in one Modal call; a larger micro-batch is split and sent concurrently."""
    breaker_failures: int = Field(3, ge=1)
    """Consecutive failed batches that open the bridge's circuit breaker: while open, the
    bridge fails at once and stops advertising its models, so the router skips Modal."""
    breaker_cooldown_s: float = Field(30.0, gt=0)
    """How long the circuit stays open before one trial batch is let through; also how often
    a failed lookup of the Modal app is retried."""


class HttpSettings(BaseSettings):
    """Where the HTTP shim listens and what one request may ask of it."""

    model_config = SettingsConfigDict(env_prefix="HTTP_", **_FROZEN)

    host: str = "127.0.0.1"
    """Where the HTTP shim listens."""
    port: int = Field(8080, ge=1, le=65535)
    """Port of the HTTP shim."""
    batch_max_texts: int = Field(64, ge=1, le=4096)
    """Most texts in one POST /v1/detect/batch request; more answer 422."""
    max_body_bytes: int = Field(1_048_576, ge=1_024)
    """Largest HTTP request body; larger bodies answer 413 before they are read whole."""
    rate_limit_rps: float = Field(50.0, ge=0)
    """Requests per second allowed per API key (token bucket refill rate); 0 turns it off."""
    rate_limit_burst: int = Field(100, ge=1)
    """Requests an API key may make at once before the rate limit answers 429."""
    stream_timeout_s: float = Field(10.0, gt=0)
    """How long ?via=stream waits for the pipeline's verdict before answering 504."""
    detailed_max_sentences: int = Field(1_000, ge=1)
    """Most sentences one request may have scored with detailed: true (summed over a
    batch); more answer 422 before any inference runs."""
    auth_fail_rps: float = Field(0.5, ge=0)
    """Failed API-key attempts per second allowed per client address (token bucket refill
    rate); 0 turns the limit off."""
    auth_fail_burst: int = Field(10, ge=1)
    """Failed API-key attempts a client address may make at once; past that every request
    from it answers 429 with Retry-After, without its key being checked."""


class ApiKeySettings(BaseSettings):
    """Who may call the HTTP shim."""

    model_config = SettingsConfigDict(env_prefix="DETECT_", **_FROZEN)

    api_keys: SecretStr | None = None
    """Comma-separated API keys for the HTTP shim (header X-API-Key). Unset: no key needed on
    loopback, and the shim refuses any other address. `key:tenant` binds a key to a tenant,
    `key:tenant:admin` or `key::admin` marks an admin key (it may read GET /v1/audit)."""


class LimitSettings(BaseSettings):
    """What an input item may be; beyond it, it is dead-lettered (HTTP: 413/422)."""

    model_config = SettingsConfigDict(env_prefix="", **_FROZEN)

    max_text_chars: int = Field(100_000, ge=1)
    """Longest accepted text; longer items are dead-lettered as too_large."""
    max_message_bytes: int = Field(1_000_000, ge=1_024)
    """Largest accepted message on detect.in; larger ones are dead-lettered as too_large."""
    max_json_depth: int = Field(32, ge=1, le=128)
    """Deepest nesting of JSON containers in an input item (anywhere, ignored fields too);
    deeper items are dead-lettered as invalid_schema (HTTP 422)."""
    max_windows: int = Field(64, ge=1, le=4096)
    """Most windows one text is scored in (a model's registry ``max_windows`` may lower it):
    windows multiply a model's cost per text. A text needing more is scored on this many
    windows spread over it, and its verdict's ``scored_chars`` says so."""


class WorkerSettings(BaseSettings):
    """Micro-batching, liveness and shutdown of the scoring services."""

    model_config = SettingsConfigDict(env_prefix="WORKER_", **_FROZEN)

    max_batch_size: int = Field(64, ge=1, le=4096)
    """Most items scored in one micro-batch."""
    max_wait_ms: int = Field(20, ge=0, le=10_000)
    """Longest a partly filled micro-batch waits for more items; a busy topic never waits."""
    backlog_batch_size: int = Field(256, ge=1, le=4096)
    """Largest micro-batch while a backlog waits: each full batch doubles the next one's
    limit from max_batch_size up to this (a model's own max_batch_size still chunks its
    inference); a partly filled one halves it back. Equal to max_batch_size: fixed batches."""
    cpu_workers: int = Field(2, ge=0, le=64)
    """CPU worker processes that `up` runs. One worker scores under one GIL (text preparation
    and TF-IDF are Python), so on two cores a second process is what uses the second one:
    `bench pipeline` measured 1.42x the items/s of one worker for 0.5 points more idle CPU.
    Set it to the cores the CPU tier may use (each worker holds its own copy of the models)."""
    threads: int = Field(0, ge=0)
    """Torch threads per CPU worker. 0: chosen per model by measured speed between 1 and the
    cores this process may use, re-checked as the load changes (consumers/thread_tuner.py);
    more threads are faster on idle cores and far slower on cores other jobs keep busy."""
    threads_max: int = Field(0, ge=0, le=1024)
    """The most torch threads a CPU worker tunes up to (WORKER_THREADS=0). 0: the cores this
    process may use. `up` gives each of its CPU workers an equal share of its cores, so that
    workers on the same cores do not spin against each other's threads."""
    pipeline: bool = False
    """Overlap micro-batches: the next one is fetched and scored while the previous one's
    outputs are acknowledged; commits stay in offset order, after every ack. Off by default:
    with it on, the chaos suite's SIGTERM rolling restart stalled once (not yet explained)."""
    device: str | None = None
    """Torch device for the GPU worker (default cuda when present)."""
    heartbeat_interval_s: float = Field(2.0, gt=0)
    """How often workers announce themselves."""
    heartbeat_ttl_s: float = Field(10.0, gt=0)
    """A backend with no announcement for this long is treated as dead by the router."""
    shutdown_grace_s: float = Field(20.0, gt=0)
    """How long a stopping service may take to drain before it is killed."""
    max_batch_attempts: int = Field(3, ge=1, le=100)
    """Failed attempts of a micro-batch before it is split to find the record that fails;
    that record is dead-lettered (model_error) once it fails this many times alone."""
    batch_timeout_s: float = Field(600.0, gt=0)
    """Longest a worker's batch inference may run: past it the batch's items go to the next
    backend of their chain and the model is not advertised until the stuck call returns.
    A router batch (or a worker's whole batch, outputs included, with 30 s more) running past
    it counts as a failed attempt; also the ceiling of the slow-batch keep-alive."""
    liveness_retry_max_s: float = Field(5.0, gt=0)
    """Longest back-off between reconnections of a failed heartbeat reader."""


class RouterSettings(BaseSettings):
    """How long and how much the router holds items with no live backend, and where on a
    backend topic it puts the items it routes."""

    model_config = SettingsConfigDict(env_prefix="ROUTER_", **_FROZEN)

    hold_max_s: float = Field(300.0, gt=0)
    """Longest an item waits for a live backend of its model; then it is dead-lettered with
    reason no_live_backend. Items behind it on its partition are routed meanwhile."""
    hold_max_bytes: int = Field(67_108_864, ge=1_048_576)
    """Most bytes of held items the router keeps in memory; beyond, an item that cannot be
    routed makes its partition wait (re-read later) instead."""
    balance: bool = True
    """Send each routed item to the backend partition given the least work so far (its
    windows), so the workers get equal work in a burst; false: the item id's hash picks the
    partition, which keeps all of one id's items on one partition."""


class ModelSettings(BaseSettings):
    """The model registry and which models are used."""

    model_config = SettingsConfigDict(env_prefix="MODELS_", **_FROZEN)

    config: Path | None = None
    """Model registry file (default: the registry shipped in models/registry.yaml)."""
    default: str = "small-fusion"
    """Model used when an item's model_id is null (the best out of domain among models fast
    enough on CPU: README, "The default model follows the evidence"; tiny-tfidf for
    throughput)."""
    only: str | None = None
    """Comma-separated model ids a worker loads (default: every model routed to its backend)."""
    int8_kernels: Literal["avx2", "native"] = "avx2"
    """The int8 kernels of SmolLM2's CTranslate2 pass on a CPU, for the whole process. avx2:
    oneDNN's AVX2 kernels on every x86 CPU, the ones small-fusion was standardised and
    calibrated on, so its scores and its model card's FPRs are the same on Intel and AMD;
    native: the fastest the CPU has (MKL on Intel, oneDNN's VNNI kernels where there are),
    whose scores differ from the card's (README, "Scores depend on the CPU")."""


class MetricsSettings(BaseSettings):
    """The Prometheus /metrics endpoint."""

    model_config = SettingsConfigDict(env_prefix="METRICS_", **_FROZEN)

    port: int = Field(0, ge=0, le=65535)
    """Port of the Prometheus /metrics endpoint of the router and workers (0: off). Under
    `up`, the children get this port, the next one, and so on (each logged)."""
    host: str = "127.0.0.1"
    """Address the /metrics endpoint listens on."""


class TelemetrySettings(BaseSettings):
    """OpenTelemetry trace export."""

    model_config = SettingsConfigDict(env_prefix="OTEL_", **_FROZEN)

    exporter_otlp_endpoint: str | None = None
    """OTLP/HTTP collector base URL (traces go to <url>/v1/traces); unset: no export, the
    trace context is still carried in Kafka headers."""


class DatabaseSettings(BaseSettings):
    """The verdict store's database, its batching and retention."""

    model_config = SettingsConfigDict(env_prefix="DATABASE_", **_FROZEN)

    url: SecretStr | None = None
    """The verdict store: unset means a SQLite file in DATABASE_STATE_DIR; postgresql://...
    means PostgreSQL (a secret: it may hold a password)."""
    state_dir: Path | None = None
    """Where the SQLite file (verdicts.sqlite3) lives when DATABASE_URL is unset (default
    $XDG_STATE_HOME/deepfake-stream, else ~/.local/state/deepfake-stream)."""
    verdict_retention_days: float = Field(90.0, ge=0)
    """Verdicts and dead letters older than this are deleted by `db prune` and the store's
    schedule (0: keep forever)."""
    audit_retention_days: float = Field(365.0, ge=0)
    """Audit-log rows older than this are deleted likewise (0: keep forever)."""
    prune_interval_s: float = Field(3600.0, gt=0)
    """How often the store enforces retention."""
    store_batch_size: int = Field(500, ge=1, le=10_000)
    """Most messages the store writes in one database transaction."""
    store_max_wait_ms: int = Field(100, ge=0, le=10_000)
    """Longest a partly filled store batch waits for more messages."""
    store_idle_wait_ms: int = Field(2_000, ge=1, le=30_000)
    """The store's broker fetch wait once it has read nothing for KAFKA_FETCH_IDLE_AFTER_MS
    (instead of KAFKA_FETCH_IDLE_WAIT_MS): history rows are on no verdict's path, so an idle
    store polls less (its CPU and the broker's); the first row after a quiet spell may be
    written up to this much later on Tansu."""
    connect_retry_max_s: float = Field(10.0, gt=0)
    """Longest back-off between attempts while the database is unreachable (the store waits,
    never exits; the shim answers 503 on the history endpoints)."""
    audit_queue_size: int = Field(10_000, ge=1)
    """Audit rows waiting for the background writer; past this, new rows are dropped (and
    counted in the log) rather than slowing requests down."""


class Settings(BaseModel):
    """All settings, grouped. Build it with :func:`load_settings`."""

    model_config = ConfigDict(frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    modal: ModalSettings = Field(default_factory=ModalSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    api: ApiKeySettings = Field(default_factory=ApiKeySettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    router: RouterSettings = Field(default_factory=RouterSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)

    @model_validator(mode="after")
    def _inputs_fit_the_broker(self) -> Settings:
        # An accepted input becomes a routed item (plus envelope and headers) that must still
        # be producible; an input the producer could never forward would fail its batch for
        # ever. The broker's topics use max.message.bytes = KAFKA_MAX_REQUEST_BYTES.
        room = self.kafka.max_request_bytes - ROUTING_HEADROOM_BYTES
        if self.limits.max_message_bytes > room:
            raise ValueError(
                f"MAX_MESSAGE_BYTES ({self.limits.max_message_bytes}) must be at most "
                f"KAFKA_MAX_REQUEST_BYTES - {ROUTING_HEADROOM_BYTES} ({room}): an accepted item "
                "must still fit the broker once routed"
            )
        return self


def _groups() -> dict[str, type[BaseSettings]]:
    groups: dict[str, type[BaseSettings]] = {}
    for name, field in Settings.model_fields.items():
        cls = field.annotation
        if not (isinstance(cls, type) and issubclass(cls, BaseSettings)):
            raise TypeError(f"Settings.{name} must be a settings group, not {cls!r}")
        groups[name] = cls
    return groups


GROUPS = _groups()

GROUP_TITLES: dict[str, str] = {
    "kafka": "Kafka",
    "topics": "topics",
    "redis": "Redis",
    "modal": "Modal",
    "http": "HTTP shim",
    "api": "API keys",
    "limits": "input limits",
    "worker": "worker",
    "router": "router",
    "models": "models",
    "metrics": "metrics",
    "telemetry": "tracing",
    "database": "verdict store",
}
"""How `COMMAND --help` titles each group's settings; the class docstring describes it."""


def env_name(group: str, field: str) -> str:
    prefix = GROUPS[group].model_config.get("env_prefix", "")
    return f"{prefix}{field}".upper()


def flag_name(group: str, field: str) -> str:
    return "--" + env_name(group, field).lower().replace("_", "-")


def all_fields() -> list[tuple[str, str]]:
    """(group, field) for every setting, in declaration order."""
    return [(g, f) for g, cls in GROUPS.items() for f in cls.model_fields]


def load_settings(overrides: dict[tuple[str, str], Any] | None = None) -> Settings:
    """Environment first, then explicit overrides (from flags or tests) on top."""
    per_group: dict[str, dict[str, Any]] = {}
    for (group, field), value in (overrides or {}).items():
        per_group.setdefault(group, {})[field] = value
    return Settings.model_validate({g: cls(**per_group.get(g, {})) for g, cls in GROUPS.items()})
