import pytest
import redis

from stack.processes import RedisServer


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """A real, empty Redis for one test."""
    redis_server.client.flushall()
    return redis_server.url


@pytest.fixture
def r(redis_url):
    return redis.Redis.from_url(redis_url)
