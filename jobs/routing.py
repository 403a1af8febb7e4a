"""Routing: which models the API accepts jobs for, and which version an unpinned job goes to."""
from jobs import keys


def set_default(redis, model: str, version: int):
    """Route `model`'s unpinned jobs to `version` from now on."""
    redis.hset(keys.routing(model), "default", str(version))


def forget_model(redis, model: str):
    """The model was removed: no default version, no longer known to the API."""
    pipe = redis.pipeline(transaction=False)
    pipe.delete(keys.routing(model))
    pipe.srem(keys.models(), model)
    pipe.execute()


def default_version(redis, model: str) -> int | None:
    value = redis.hget(keys.routing(model), "default")
    return int(value) if value else None


def known_models(redis) -> set[str]:
    return {m.decode() for m in redis.smembers(keys.models())}
