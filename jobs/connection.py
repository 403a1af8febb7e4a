"""How every process reaches Redis, from the settings: one Redis URL, or the master that Redis
Sentinel names. Gives the redis-py client, Celery's broker configuration and the rate limiter's
storage in the forms redis-py, kombu and `limits` understand, so each follows a failover itself.

With Sentinel, INFERQ_REDIS_URL still carries what is not an address: the database (its path),
the user and password (its userinfo) and TLS (`rediss://` and its query), passed to the master."""
from urllib.parse import quote, unquote, urlsplit

import redis as redis_lib
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

# What a sentinel is asked with: a dead one is passed over within a second.
SENTINEL_TIMEOUT_S = 1.0


def _default_retry() -> Retry:
    # redis-py's own default for Redis(); a Sentinel-managed pool would otherwise retry nothing.
    return Retry(ExponentialWithJitterBackoff(base=1, cap=10), 3)


def _url_options(settings) -> dict:
    """The connection options of INFERQ_REDIS_URL that are not its address."""
    options = parse_url(settings.redis_url)
    for name in ("host", "port", "path", "connection_class"):
        options.pop(name, None)
    if settings.redis_url.startswith("rediss://"):
        options["ssl"] = True
    return options


def _sentinel_kwargs(settings) -> dict:
    """How each sentinel is reached: TLS as the master, its own password, and no retries (a
    dead sentinel is passed over for the next one, not waited for)."""
    tls = {k: v for k, v in _url_options(settings).items() if k.startswith("ssl")}
    return {"socket_timeout": SENTINEL_TIMEOUT_S, "socket_connect_timeout": SENTINEL_TIMEOUT_S,
            "retry": Retry(NoBackoff(), 0), "username": None,
            "password": settings.redis_sentinel_password or None, **tls}


def client(settings, **options) -> redis_lib.Redis:
    """A redis-py client of the master; `options` are redis-py's (socket_timeout, retry, ...)."""
    if not settings.redis_sentinels:
        return redis_lib.Redis.from_url(settings.redis_url, **options)
    options.setdefault("retry", _default_retry())
    sentinel = Sentinel(settings.sentinel_addresses, sentinel_kwargs=_sentinel_kwargs(settings))
    return sentinel.master_for(settings.redis_master, **{**_url_options(settings), **options})


def celery_config(settings) -> dict:
    """Celery settings for the broker: `app.conf.update(**celery_config(settings))`."""
    if not settings.redis_sentinels:
        return {"broker_url": settings.redis_url}
    url = urlsplit(settings.redis_url)
    userinfo = ""
    if url.username or url.password:
        userinfo = (f"{quote(unquote(url.username or ''), safe='')}:"
                    f"{quote(unquote(url.password or ''), safe='')}@")
    db = url.path if url.path not in ("", "/") else "/0"
    broker = ";".join(f"sentinel://{userinfo}{host}:{port}{db}"
                      for host, port in settings.sentinel_addresses)
    options = {"master_name": settings.redis_master,
               "sentinel_kwargs": _sentinel_kwargs(settings)}
    config = {"broker_url": broker, "broker_transport_options": options}
    if url.scheme == "rediss":
        tls = {k: v for k, v in _url_options(settings).items() if k.startswith("ssl_")}
        config["broker_use_ssl"] = tls or {"ssl_cert_reqs": "required"}
    return config


def limiter_storage(settings, **options) -> tuple[str, dict]:
    """Flask-Limiter's (storage_uri, storage_options); `options` are redis-py's."""
    if not settings.redis_sentinels:
        return settings.redis_url, options
    hosts = ",".join(f"{host}:{port}" for host, port in settings.sentinel_addresses)
    master = {k: v for k, v in _url_options(settings).items() if v is not None}
    # limits gives the master's password to the sentinels unless sentinel_kwargs say otherwise;
    # counters on the master only: a replica's may lag behind.
    return (f"redis+sentinel://{hosts}/{settings.redis_master}",
            {**master, **options, "sentinel_kwargs": _sentinel_kwargs(settings),
             "use_replicas": False})
