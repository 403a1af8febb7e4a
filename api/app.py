"""The Flask app factory. The API stores jobs in Redis and never imports TensorFlow."""

import orjson
from flask import Flask
from flask.json.provider import DefaultJSONProvider
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from api import admin, auth, batches, console, errors, health, index, jobs, kserve, limits
from api import metrics, models, stats, tfserving, workers
from api import openapi
from api.catalog import Catalog
from api.logs import setup_logging
from jobs import connection
from jobs.batch import Batches
from jobs.deliveries import delivery_ttl_s
from jobs.settings import Settings, load_settings
from jobs.producer import Producer


class Context:
    """What the request handlers share: settings, the Redis client, the job store, the
    catalog of models, the batch store."""

    def __init__(self, settings: Settings):
        self.settings = settings
        from jobs.listener import FinishListener

        # Fail fast when Redis is down, so clients get a 503 at once rather than a hang.
        # A request thread holds one pooled connection at a time (waits share the listener's
        # own connection), so twice the threads never runs out; redis-py's default cap
        # (100 in redis-py 8) would, with more threads.
        self.redis = connection.client(
            settings, socket_connect_timeout=1, socket_timeout=5,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2), health_check_interval=15,
            max_connections=2 * settings.api_threads + 8)
        self.store = Producer(self.redis, settings.result_ttl_s, settings.max_backlog,
                              settings.webhook_max_age_s,
                              listener=FinishListener(self.redis),
                              replicas=(settings.redis_min_replicas_ack,
                                        settings.redis_wait_timeout_ms))
        self.catalog = Catalog(settings, self.redis)
        self.batches = Batches(self.redis, settings.batch_ttl_s,
                               delivery_ttl_s(settings.batch_ttl_s, settings.webhook_max_age_s))


class JSON(DefaultJSONProvider):
    """Responses through orjson: the standard encoder was most of the cost of writing a job
    out (54 us against 21 us). Indented output (debug), and whatever orjson refuses (keys that
    are not strings, integers over 64 bits), still go through the standard one."""

    sort_keys = False

    def dumps(self, obj, **kwargs) -> str:
        if kwargs.get("indent") is None:
            try:
                return orjson.dumps(obj, default=self.default).decode()
            except TypeError:
                pass
        return super().dumps(obj, **kwargs)


def create_app(config: dict | None = None) -> Flask:
    """`config` overrides settings by field name (e.g. {"redis_url": ...}); the rest come from
    INFERQ_* environment variables."""
    settings = load_settings(**(config or {}))
    setup_logging(settings.log_level)
    app = Flask("inferq")
    app.json = JSON(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # "//" in a path is a 404 in inferq's JSON, not a redirect with an HTML body.
    app.url_map.merge_slashes = False
    ctx = app.extensions["inferq"] = Context(settings)
    ctx.keyring = auth.Keyring(settings.api_keys, settings.admin_keys)
    errors.register(app)
    # Authentication runs before the rate limiter, which counts per tenant.
    app.before_request(auth.authenticate)
    limits.install(app, settings)
    for module in (index, console, jobs, batches, models, admin, health, metrics, stats,
                   workers, tfserving, kserve):
        app.register_blueprint(module.bp)
    app.register_blueprint(openapi.bp)
    return app
