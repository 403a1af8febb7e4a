"""jobs/connection.py: one Redis URL or Redis Sentinel, for redis-py, Celery and the rate
limiter; then against a real master, replica and three sentinels, through a failover."""
import threading

import pytest
import redis
from kombu import Connection
from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.sentinel import SentinelConnectionPool

from jobs import connection, keys
from jobs.consumer import Consumer, InputResult
from jobs.listener import FinishListener
from jobs.producer import NotReplicated, Producer
from jobs.settings import load_settings
from jobs.stream import StreamConsumer
from stack.processes import RedisGroup, wait_for

SENTINELS = {"INFERQ_REDIS_SENTINELS": "10.0.0.1:26379,sentinel-2:26380",
             "INFERQ_REDIS_MASTER": "inferq"}


def test_a_plain_url_passes_through_unchanged():
    s = load_settings({"INFERQ_REDIS_URL": "rediss://:pw@redis:6380/2"})
    assert connection.celery_config(s) == {"broker_url": "rediss://:pw@redis:6380/2"}
    assert connection.limiter_storage(s, socket_timeout=2) == ("rediss://:pw@redis:6380/2",
                                                               {"socket_timeout": 2})
    r = connection.client(s, socket_timeout=3)
    kwargs = r.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == \
        ("redis", 6380, 2, "pw")


def test_sentinel_settings_give_each_library_its_own_form():
    s = load_settings({**SENTINELS, "INFERQ_REDIS_URL": "redis://app:s%40cret@ignored/3"})
    config = connection.celery_config(s)
    assert config["broker_url"] == ("sentinel://app:s%40cret@10.0.0.1:26379/3;"
                                    "sentinel://app:s%40cret@sentinel-2:26380/3")
    assert config["broker_transport_options"]["master_name"] == "inferq"
    assert "broker_use_ssl" not in config
    uri, options = connection.limiter_storage(s, socket_timeout=2)
    assert uri == "redis+sentinel://10.0.0.1:26379,sentinel-2:26380/inferq"
    assert options["db"] == 3 and options["password"] == "s@cret" and options["username"] == "app"
    assert options["sentinel_kwargs"]["password"] is None  # not the master's
    r = connection.client(s, socket_timeout=3)
    pool = r.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "inferq"
    assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["password"] == "s@cret"
    assert pool.connection_kwargs["socket_timeout"] == 3


def test_tls_passes_through_to_the_master_and_the_sentinels():
    s = load_settings({**SENTINELS, "INFERQ_REDIS_URL": "rediss://h/0?ssl_cert_reqs=none"})
    config = connection.celery_config(s)
    assert config["broker_use_ssl"] == {"ssl_cert_reqs": "none"}
    assert config["broker_transport_options"]["sentinel_kwargs"]["ssl"] is True
    r = connection.client(s)
    assert r.connection_pool.connection_class.__name__ == "SentinelManagedSSLConnection"
    _, options = connection.limiter_storage(s)
    assert options["ssl"] is True and options["sentinel_kwargs"]["ssl"] is True


@pytest.fixture(scope="module")
def group():
    g = RedisGroup()
    yield g
    g.stop()


def _settings(group, **overrides):
    return load_settings({}, redis_url=group.url, **group.settings, **overrides)


def test_every_library_reaches_the_master_through_the_sentinels(group):
    s = _settings(group)
    r = connection.client(s, socket_timeout=2)
    r.set("probe", "1")
    assert group.server(group.master_port()).client.get("probe") == b"1"
    config = connection.celery_config(s)
    with Connection(config["broker_url"],
                    transport_options=config["broker_transport_options"]) as conn:
        conn.ensure_connection(max_retries=1)
        queue = conn.SimpleQueue("probe-queue")
        queue.put({"hello": 1})
        assert queue.get(timeout=5).payload == {"hello": 1}
        queue.close()
    uri, options = connection.limiter_storage(s, socket_timeout=2)
    limiter = MovingWindowRateLimiter(storage_from_string(uri, **options))
    item = RateLimitItemPerMinute(1)
    assert limiter.hit(item, "probe") and not limiter.hit(item, "probe")


def test_a_failover_moves_writes_long_polls_and_scripts_to_the_new_master(group):
    s = _settings(group, redis_min_replicas_ack=1, redis_wait_timeout_ms=2000)
    r = connection.client(s, socket_timeout=2)
    store = Producer(r, 60, 1000, 60, listener=FinishListener(r),
                     replicas=(s.redis_min_replicas_ack, s.redis_wait_timeout_ms))
    job, _ = store.enqueue("m", [b"a"], fallback_version="1")  # WAIT 1: a replica has it
    reader = StreamConsumer(r, "m", 1, "w")
    reader.ensure_group()
    entry = reader.read(1)[0]
    old = group.master_port()
    result = {}
    waiting = threading.Thread(target=lambda: result.update(store.wait(job["id"], 60)))
    waiting.start()
    wait_for(lambda: group.server(old).client.pubsub_numpat() == 1, 10, "the long-poll")

    # A failover with the old master alive: it becomes a replica, so writes to it fail
    # (READONLY) until the client asks the sentinels again.
    group.sentinels[0].client.sentinel_failover(group.NAME)
    new = group.wait_failover(old)
    group.wait_ready(new)
    group.server(new).client.script_flush()  # a master that never saw the scripts

    # The long-poll is still waiting; the finish on the new master wakes it.
    def finish():
        try:
            Consumer(r, 60, 60).finish("m", 1, [InputResult(entry.id, job["id"], entry.idx,
                                                            output={"top_k": [],
                                                                    "metrics": {}})])
            return True
        except redis.ConnectionError:  # still on the old master: it asks the sentinels again
            return False

    wait_for(finish, 20, "a finish on the new master", 0.1)
    waiting.join(20)
    assert result.get("status") == "succeeded"
    assert group.server(new).client.hget(keys.job(job["id"]), "status") == b"succeeded"
    again, _ = store.enqueue("m", [b"b"], fallback_version="1")  # the enqueue script reloaded
    assert store.get(again["id"])["status"] == "queued"


def test_no_replica_in_time_is_refused_with_the_job_named(group):
    s = _settings(group, redis_min_replicas_ack=2, redis_wait_timeout_ms=50)  # one replica
    store = Producer(connection.client(s), 60, 1000, 60,
                     replicas=(s.redis_min_replicas_ack, s.redis_wait_timeout_ms))
    with pytest.raises(NotReplicated) as caught:
        store.enqueue("m", [b"a"], fallback_version="1")
    assert caught.value.acked == 1
    assert store.get(caught.value.job_id)["status"] == "queued"  # stored, not yet copied
