import contextlib

import pytest
import redis

from stack.processes import RedisServer, Stack


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


@pytest.fixture
def own_redis():
    """A redis-server of this test's own: for what Redis counts server-wide (CLIENT LIST, INFO
    commandstats), and for crashing it."""
    server = RedisServer()
    yield server
    server.stop()


@contextlib.contextmanager
def _stacks():
    """A factory of stack.processes.Stack; every stack it made is closed on the way out, the
    last made first, however the tests ended."""
    with contextlib.ExitStack() as made:
        yield lambda **options: made.enter_context(Stack(**options))


@pytest.fixture(scope="session")
def stack():
    """The common stack: Redis, the API, a worker serving the demo model `shapes`, and the
    webhook worker. Shared by every module that asks for `stack` without defining its own:
    tests must not change its settings or stop its processes."""
    with Stack(models=["shapes"], webhooks=True) as common:
        yield common


@pytest.fixture
def stack_factory():
    """stack_factory(models=[...], webhooks=False, repository=None, aof=False, **settings):
    a Stack for this test only (models empty: no worker), closed after it."""
    with _stacks() as make:
        yield make


@pytest.fixture(scope="module")
def module_stack_factory():
    """As stack_factory, for a stack that a module's tests share; closed after the module."""
    with _stacks() as make:
        yield make
