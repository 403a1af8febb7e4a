"""All settings, read once from INFERQ_* environment variables and checked at start."""
import ipaddress
import os
import re
from dataclasses import dataclass, fields

from jobs.ssrf import parse_networks


class SettingsError(ValueError):
    """A setting has a value inferq cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Redis Sentinel (jobs/connection.py): `host:port,...` of the sentinels and the name of the
    # master they watch; INFERQ_REDIS_URL then gives only the database, password and TLS.
    redis_sentinels: str = ""
    redis_master: str = ""
    redis_sentinel_password: str = ""
    # A submit waits (WAIT) until this many replicas have the job before answering 202, for at
    # most redis_wait_timeout_ms; fewer is a 503. 0: no waiting (a failover may lose the job).
    redis_min_replicas_ack: int = 0
    redis_wait_timeout_ms: int = 500
    # The address the API listens on: this machine only unless asked (the images set 0.0.0.0).
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = 3
    api_threads: int = 32
    api_access_log: bool = False
    model_repository: str = "models"
    # Worker: which models to serve (comma-separated names; empty = every model in the repository).
    models: str = ""
    gpu: str = ""
    max_batch_size: int = 32
    max_wait_s: float = 0.0
    decode_threads: int = 2
    claim_idle_s: float = 30.0
    max_attempts: int = 3
    heartbeat_s: float = 2.0
    repository_poll_s: float = 2.0  # how often workers look for new, changed or removed models
    result_ttl_s: int = 3600
    max_backlog: int = 10000
    max_body_bytes: int = 20 * 1024 * 1024
    max_inputs_per_job: int = 64
    max_image_pixels: int = 25_000_000
    # JSON request bodies (submit, TF Serving, KServe): size in bytes and nesting depth.
    max_json_bytes: int = 20 * 1024 * 1024
    max_json_depth: int = 32
    max_long_poll_s: float = 30.0
    log_level: str = "INFO"  # DEBUG, INFO, WARNING or ERROR, in any case
    # Authentication: `key=tenant` pairs, comma-separated, or `@path` to a file with one
    # `key tenant` per line. With no keys set the API is open (local development).
    api_keys: str = ""
    admin_keys: str = ""
    public_docs: bool = True  # /docs and /openapi.json without a key
    # Rate limits per tenant (Flask-Limiter syntax, e.g. "50/second;1000/minute"; empty = none):
    # job creation (submits and synchronous inference) and everything else.
    rate_limit_submit: str = ""
    rate_limit_read: str = ""
    # Model upload and removal with no keys set (with keys, an admin key is what allows it).
    model_admin: bool = False
    max_model_bytes: int = 512 * 1024 * 1024
    # Webhooks: signing secrets (comma-separated whsec_..., several while rotating), networks
    # let through the SSRF guard (CIDRs, for local development), the retry delays, how long
    # to keep retrying, and the base URL the delivered job's urls point at.
    webhook_secret: str = ""
    webhook_allow_networks: str = ""
    webhook_retry_schedule_s: str = "5,30,120,600,1800,3600"
    webhook_max_age_s: float = 86400.0
    public_url: str = ""
    # Bulk batches: the batch store (a directory every API and feeder process shares), the
    # largest upload, the most inputs in one file, batches a tenant may run at once, inputs of
    # one model version in flight at once (the feeder's window), and how long a finished
    # batch and its files are kept.
    batch_dir: str = ".run/batches"
    batch_max_bytes: int = 2 * 1024 ** 3
    batch_max_inputs: int = 100_000
    batch_max_active: int = 4
    batch_window: int = 256
    batch_ttl_s: int = 7 * 86400

    def __post_init__(self):
        positive = ("api_port", "api_workers", "api_threads", "max_batch_size",
                    "decode_threads", "claim_idle_s", "max_attempts", "heartbeat_s",
                    "repository_poll_s", "result_ttl_s", "max_backlog", "max_body_bytes",
                    "max_inputs_per_job", "max_image_pixels", "max_long_poll_s",
                    "max_json_bytes", "max_json_depth",
                    "max_model_bytes", "webhook_max_age_s", "batch_max_bytes",
                    "batch_max_inputs", "batch_max_active", "batch_window", "batch_ttl_s")
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"INFERQ_{name.upper()} must be greater than 0, "
                                    f"got {getattr(self, name)!r}")
        if self.max_wait_s < 0:
            raise SettingsError(f"INFERQ_MAX_WAIT_S must be 0 or more, got {self.max_wait_s!r}")
        for secret in self.webhook_secrets:
            if not secret.startswith("whsec_"):
                raise SettingsError("INFERQ_WEBHOOK_SECRET must be whsec_<base64> secrets, "
                                    "comma-separated")
        try:
            parse_networks(self.webhook_allow_networks)
        except ValueError as exc:
            raise SettingsError(f"INFERQ_WEBHOOK_ALLOW_NETWORKS: {exc}") from None
        try:
            schedule = self.webhook_retry_schedule
        except ValueError:
            schedule = []
        if not schedule or min(schedule) <= 0:
            raise SettingsError("INFERQ_WEBHOOK_RETRY_SCHEDULE_S must be comma-separated "
                                f"positive seconds, got {self.webhook_retry_schedule_s!r}")
        level = self.log_level.strip().upper()
        if level not in LOG_LEVELS:
            raise SettingsError(f"INFERQ_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)} "
                                f"(any case), got {self.log_level!r}")
        object.__setattr__(self, "log_level", level)  # what logging and Celery accept
        if not _valid_host(self.api_host):
            raise SettingsError("INFERQ_API_HOST must be an IP address or a host name (e.g. "
                                f"127.0.0.1, or 0.0.0.0 for every interface), got "
                                f"{self.api_host!r}")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(f"INFERQ_REDIS_URL must be a redis:// or rediss:// URL, "
                                f"got {self.redis_url!r}")
        self._check_sentinel()
        if self.redis_min_replicas_ack < 0:
            raise SettingsError("INFERQ_REDIS_MIN_REPLICAS_ACK must be 0 or more, "
                                f"got {self.redis_min_replicas_ack!r}")
        if self.redis_wait_timeout_ms <= 0:
            raise SettingsError("INFERQ_REDIS_WAIT_TIMEOUT_MS must be greater than 0, "
                                f"got {self.redis_wait_timeout_ms!r}")

    def _check_sentinel(self):
        if not self.redis_sentinels:
            if self.redis_master:
                raise SettingsError("INFERQ_REDIS_MASTER needs INFERQ_REDIS_SENTINELS "
                                    "(host:port of each sentinel, comma-separated)")
            return
        try:
            addresses = self.sentinel_addresses
        except ValueError:
            addresses = []
        if not addresses:
            raise SettingsError("INFERQ_REDIS_SENTINELS must be host:port of each sentinel, "
                                f"comma-separated, got {self.redis_sentinels!r}")
        if not self.redis_master.strip():
            raise SettingsError("INFERQ_REDIS_MASTER must name the master the sentinels watch "
                                "(their `sentinel monitor <name> ...`)")
        if self.redis_url.startswith("unix://"):
            raise SettingsError("INFERQ_REDIS_URL must be redis:// or rediss:// with "
                                f"INFERQ_REDIS_SENTINELS, got {self.redis_url!r}")

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """(host, port) of each sentinel; ValueError for a bad entry."""
        found = []
        for item in self.redis_sentinels.split(","):
            host, sep, port = item.strip().rpartition(":")
            host = host.strip("[]")
            if not sep or not _valid_host(host) or not port.isdigit() \
                    or not 0 < int(port) < 65536:
                raise ValueError(item)
            found.append((host, int(port)))
        return found

    @property
    def model_names(self) -> list[str]:
        return [m.strip() for m in self.models.split(",") if m.strip()]

    @property
    def webhook_secrets(self) -> list[str]:
        return [x.strip() for x in self.webhook_secret.split(",") if x.strip()]

    @property
    def webhook_retry_schedule(self) -> list[float]:
        return [float(x) for x in self.webhook_retry_schedule_s.split(",") if x.strip()]

    @property
    def webhook_networks(self) -> list:
        return parse_networks(self.webhook_allow_networks)

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://localhost:{self.api_port}"

    @property
    def heartbeat_ttl_s(self) -> float:
        # A worker is taken for dead after missing three heartbeats.
        return self.heartbeat_s * 3


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST_NAME.match(host))


def _parse(kind, raw: str):
    if kind is int:
        return int(raw.replace("_", ""))
    if kind is bool:
        if raw.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValueError(raw)
        return raw.lower() in ("1", "true", "yes", "on")
    return kind(raw)


def load_settings(environ=None, **overrides) -> Settings:
    """Build Settings from `environ` (default os.environ), then apply keyword overrides."""
    environ = os.environ if environ is None else environ
    values = {}
    for f in fields(Settings):
        raw = environ.get(f"INFERQ_{f.name.upper()}")
        if raw is None or raw == "":
            continue
        try:
            values[f.name] = _parse(f.type, raw)
        except ValueError:
            kind = {int: "whole number", float: "number", bool: "boolean (1/0, true/false)"}[f.type]
            raise SettingsError(f"INFERQ_{f.name.upper()} must be a {kind}, got {raw!r}") from None
    values.update(overrides)
    return Settings(**values)
