"""The worker registry: each worker's heartbeat and what it serves."""
import json
import time

from jobs import keys


def heartbeat(redis, name: str, info: dict, ttl_s: float):
    now = time.time()
    pipe = redis.pipeline(transaction=False)
    pipe.set(keys.worker(name), json.dumps(info), px=int(ttl_s * 1000))
    pipe.zadd(keys.workers(), {name: now})
    pipe.zremrangebyscore(keys.workers(), "-inf", now - 3600)  # forget long-dead workers
    served = {m["name"] for m in info.get("models", []) if m["state"] == "available"}
    if served:
        pipe.sadd(keys.models(), *served)
    pipe.execute()


def remove_worker(redis, name: str):
    pipe = redis.pipeline(transaction=False)
    pipe.delete(keys.worker(name))
    pipe.zrem(keys.workers(), name)
    pipe.execute()


def live_workers(redis, ttl_s: float) -> list[dict]:
    names = redis.zrangebyscore(keys.workers(), time.time() - ttl_s, "+inf")
    if not names:
        return []
    infos = redis.mget([keys.worker(n.decode()) for n in names])
    return [json.loads(i) for i in infos if i]
