"""Start the real pieces as processes: redis-server, the API under gunicorn, workers."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import requests
from redis.backoff import NoBackoff
from redis.retry import Retry

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def queued_inputs(r, stream: str) -> list[bytes | None]:
    """The bytes of each input queued on `stream`, in order (each entry names its input's key)."""
    from jobs import keys

    return [r.get(keys.job_input(f[b"job"].decode(), int(f[b"idx"]))) for _, f in r.xrange(stream)]


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")


def stays(predicate, duration_s: float, what: str, interval_s: float = 0.1):
    """Check that `predicate` holds for `duration_s`, failing the moment it does not: for
    showing that something does not happen within a time."""
    deadline = time.monotonic() + duration_s
    while True:
        assert predicate(), f"{what} stopped holding"
        if time.monotonic() >= deadline:
            return
        time.sleep(interval_s)


class RedisServer:
    """`replica_of`: the port of a local master this one replicates."""

    def __init__(self, aof: bool = False, appendfsync: str = "always",
                 replica_of: int | None = None):
        if not shutil.which("redis-server"):
            raise RuntimeError("redis-server is not installed: run scripts/install.sh")
        self.dir = tempfile.mkdtemp(prefix="inferq-redis-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        # With AOF and `always`, every write is fsynced, so a kill -9 loses nothing the tests
        # wrote; `everysec` is what `make run` uses (up to a second of writes at risk).
        self.args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                     "--dir", self.dir, "--save", "", "--hz", "100",
                     "--maxmemory-policy", "noeviction", "--appendonly", "yes" if aof else "no",
                     "--appendfsync", appendfsync]
        if replica_of:
            self.args += ["--replicaof", "127.0.0.1", str(replica_of)]
        self.client = redis.Redis(port=self.port)
        # Asks once per try: redis-py's own retries back off for seconds while it starts.
        self._probe = redis.Redis(port=self.port, retry=Retry(NoBackoff(), 0))
        self._start()

    def _start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            wait_for(self._ping, 10, "redis-server to answer")
        except BaseException:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def crash_and_restart(self, down_s: float = 1.0):
        """SIGKILL, stay down `down_s`, start again on the same port and data."""
        self.crash()
        time.sleep(down_s)
        self.restart()

    def crash(self):
        """SIGKILL: no shutdown, no final AOF flush."""
        self.proc.kill()
        self.proc.wait(10)

    def restart(self):
        """Start again on the same port and data (after crash())."""
        self._start()

    def _ping(self):
        try:
            return self._probe.ping()
        except redis.ConnectionError:
            return False

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.client.close()
        self._probe.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelServer(RedisServer):
    """A Redis Sentinel watching the local master on `master_port` as `name`, with short
    timeouts: a master that does not answer for `down_ms` is failed over in a few seconds."""

    def __init__(self, master_port: int, name: str, down_ms: int = 1000):
        self.dir = tempfile.mkdtemp(prefix="inferq-sentinel-")
        self.port = free_port()
        self.name = name
        conf = Path(self.dir, "sentinel.conf")  # Sentinel rewrites it: its own file
        conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
                        f"sentinel monitor {name} 127.0.0.1 {master_port} 2\n"
                        f"sentinel down-after-milliseconds {name} {down_ms}\n"
                        f"sentinel failover-timeout {name} {4 * down_ms}\n"
                        f"sentinel parallel-syncs {name} 1\n")
        self.args = ["redis-server", str(conf), "--sentinel"]
        self.url = f"redis://127.0.0.1:{self.port}"
        self.client = redis.Redis(port=self.port, decode_responses=True)
        self._probe = redis.Redis(port=self.port, retry=Retry(NoBackoff(), 0))
        self._start()

    def master(self) -> dict:
        return self.client.sentinel_master(self.name)


class RedisGroup:
    """A master, `replicas` replicas and three sentinels on this machine: what the settings
    `redis_sentinels` and `redis_master` point every process at."""

    NAME = "inferq"

    def __init__(self, replicas: int = 1, aof: bool = False):
        self.master = RedisServer(aof=aof)
        self.replicas, self.sentinels = [], []
        try:
            for _ in range(replicas):
                self.replicas.append(RedisServer(aof=aof, replica_of=self.master.port))
            for _ in range(3):
                self.sentinels.append(SentinelServer(self.master.port, self.NAME))
            self.wait_ready(self.master.port)
        except BaseException:
            self.stop()
            raise
        # The URL gives only the database: the sentinels give the address.
        self.url = "redis://127.0.0.1/0"
        self.settings = {"redis_master": self.NAME,
                         "redis_sentinels": ",".join(f"127.0.0.1:{s.port}"
                                                     for s in self.sentinels)}

    def master_port(self) -> int | None:
        """The master's port as the sentinels agree on it (None while they disagree)."""
        ports = set()
        for s in self.sentinels:
            try:
                ports.add(int(s.master()["port"]))
            except redis.RedisError:
                return None
        return ports.pop() if len(ports) == 1 else None

    def wait_failover(self, old_port: int, timeout_s: float = 30) -> int:
        """Until the sentinels agree on a master other than `old_port`; its port."""
        def moved():
            port = self.master_port()
            return port if port not in (None, old_port) else None

        return wait_for(moved, timeout_s, f"the sentinels to fail over from {old_port}", 0.05)

    def wait_ready(self, master_port: int, timeout_s: float = 30):
        """Until every sentinel names `master_port` the master, sees the other two sentinels and
        every live replica in sync: only then can a failover happen and lose nothing."""
        live = [r for r in [self.master, *self.replicas]
                if r.port != master_port and r.proc.poll() is None]

        def ready():
            for s in self.sentinels:
                state = s.master()
                if (int(state["port"]) != master_port or "s_down" in state["flags"]
                        or int(state["num-other-sentinels"]) < 2
                        or int(state["num-slaves"]) < len(live)):
                    return False
            return all(r.client.info("replication").get("master_link_status") == "up"
                       for r in live)

        wait_for(ready, timeout_s, f"the sentinels to agree on the master on {master_port}", 0.2)

    def server(self, port: int) -> RedisServer:
        return next(r for r in [self.master, *self.replicas] if r.port == port)

    def stop(self):
        for server in [*self.sentinels, *self.replicas, self.master]:
            try:
                server.stop()
            except Exception:  # keep stopping the rest
                pass

    def client(self, **options) -> redis.Redis:
        """A client of whichever server is the master now (jobs/connection.py)."""
        from jobs.connection import client
        from jobs.settings import load_settings

        return client(load_settings({}, redis_url=self.url, **self.settings), **options)


def service_env(redis_url: str, **settings) -> dict:
    env = dict(os.environ)
    env.update({"INFERQ_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    env.update({f"INFERQ_{k.upper()}": str(v) for k, v in settings.items()})
    return env


class Proc:
    """A service process with its output in a log file, in its own process group."""

    def __init__(self, args, env, name):
        self.log_path = Path(tempfile.mkstemp(prefix=f"inferq-{name}-", suffix=".log")[1])
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def kill9(self):
        """SIGKILL the whole process group: no cleanup, as a crash or an OOM kill would."""
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout_s: float = 30):
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


def start_api(redis_url: str, capabilities: bool = True, port: int | None = None,
              **settings) -> tuple[Proc, str]:
    """The API under gunicorn, with INFERQ_* `settings`, on `port` (default: a free one).
    `capabilities=False`: without any capability (setpriv), so that file permissions bind it
    as they bind any user, while the interpreter (which may live under a home only its owner
    can enter) stays reachable."""
    port = port or free_port()
    settings.setdefault("api_workers", 2)
    env = service_env(redis_url, api_port=port, **settings)
    drop = [] if capabilities else ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"]
    proc = Proc([*drop, str(BIN / "gunicorn"), "-c", "api/gunicorn_conf.py",
                 "api.app:create_app()"], env, "api")
    base = f"http://127.0.0.1:{port}"

    def up():
        if not proc.alive():
            raise RuntimeError("API exited:\n" + proc.output())
        try:
            return requests.get(base + "/healthz", timeout=2).ok
        except requests.RequestException:  # not up yet, or slow under load
            return False

    _started(proc, up, 30, "the API to start")
    return proc, base


def _started(proc: Proc, ready, timeout_s: float, what: str):
    """Wait until `ready()`; a process that does not get there is stopped, not left behind."""
    try:
        wait_for(ready, timeout_s, what, 0.2)
    except BaseException:
        proc.stop(timeout_s=5)
        raise


def start_worker(redis_url: str, models=None, wait_ready: bool = True, gpu=None,
                 **settings) -> Proc:
    args = [str(BIN / "celery"), "-A", "worker.app", "worker", "--loglevel", "INFO",
            "--without-mingle", "--without-gossip", "--hostname", f"test-{free_port()}@%h"]
    if models:
        args += ["--models", ",".join(models)]
    if gpu is not None:
        args += ["--gpu", str(gpu)]
    proc = Proc(args, service_env(redis_url, **settings), "worker")
    if wait_ready:
        models = models or ["shapes"]
        with redis.Redis.from_url(redis_url) as client:
            _started(proc, lambda: _serving(proc, client, models), 120,
                     f"worker {proc.pid} to serve {models}")
    return proc


def wait_until_serving(proc: Proc, redis_url: str, models, timeout_s: float = 120):
    """Wait until this worker process heartbeats that it serves `models`."""
    with redis.Redis.from_url(redis_url) as client:
        wait_for(lambda: _serving(proc, client, models), timeout_s,
                 f"worker {proc.pid} to serve {models}", 0.2)


def _serving(proc: Proc, client, models) -> bool:
    from jobs.registry import live_workers

    if not proc.alive():
        raise RuntimeError("worker exited:\n" + proc.output()[-5000:])
    for w in live_workers(client, 10):
        served = {m["name"] for m in w["models"] if m["state"] == "available"}
        if w["pid"] == proc.pid and set(models) <= served:
            return True
    return False


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def model_processes(worker_pid: int) -> list[int]:
    """The worker's model processes (not multiprocessing's resource tracker)."""
    found = []
    for pid in children(worker_pid):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


def start_webhook_worker(redis_url: str, **settings) -> Proc:
    return _start_light("webhooks", "webhook worker", redis_url, settings)


def start_feeder(redis_url: str, **settings) -> Proc:
    return _start_light("feeder", "feeder", redis_url, settings)


def _start_light(app: str, what: str, redis_url: str, settings: dict) -> Proc:
    """A light Celery worker (no TensorFlow): `<app>.app`; waits until Celery says ready."""
    args = [str(BIN / "celery"), "-A", f"{app}.app", "worker", "--loglevel", "INFO",
            "--without-mingle", "--without-gossip", "--hostname", f"{app}-{free_port()}@%h"]
    proc = Proc(args, service_env(redis_url, **settings), app)

    def ready():
        if not proc.alive():
            raise RuntimeError(f"{what} exited:\n" + proc.output()[-5000:])
        return " ready." in proc.output()

    _started(proc, ready, 60, f"the {what} to start")
    return proc


class Stack:
    """Redis, the API under gunicorn, a worker serving `models` (empty: no worker) and, with
    `webhooks`, the webhook worker, with `feeder` the batch feeder, each a process. close() (or
    leaving the `with` block) stops every process it started, whatever state they were left
    in, and removes Redis' data.
    `settings` are INFERQ_* settings for every process; `repository` the model repository.
    With `sentinel`, Redis is a RedisGroup (a master, a replica, three sentinels), `self.group`,
    and every process reaches it through the sentinels."""

    def __init__(self, models=("shapes",), webhooks: bool = False, repository=None,
                 aof: bool = False, feeder: bool = False, sentinel: bool = False, **settings):
        if repository is not None:
            settings["model_repository"] = repository
        self.repository = repository
        self._batch_dir = None
        if "batch_dir" not in settings:  # the stack's own batch store, removed with it
            self._batch_dir = settings["batch_dir"] = tempfile.mkdtemp(prefix="inferq-batches-")
        self.settings = settings
        self.procs: list[Proc] = []
        self.api = self.worker = self.hooks = self.feeder = None
        self.group = None
        if sentinel:
            self.group = RedisGroup(aof=aof)
            self.redis, self.url = self.group.master, self.group.url
            settings.update(self.group.settings)
            self.client = self.group.client()
        else:
            self.redis = RedisServer(aof=aof)
            self.url = self.redis.url
            self.client = redis.Redis.from_url(self.url)
        try:
            self.api, self.base = start_api(self.url, **settings)
            self.procs.append(self.api)
            # Webhook bodies carry the job's URLs: the workers point them at this API.
            settings.setdefault("public_url", self.base)
            if models:
                self.worker = self.start_worker(models)
            if webhooks:
                self.hooks = self.start_webhook_worker()
            if feeder:
                self.feeder = self.start_feeder()
        except BaseException:
            self.close()
            raise

    def restart_api(self, kill: bool = False, **settings) -> Proc:
        """Stop the API (SIGTERM, or with `kill` SIGKILL: requests in flight are cut) and start
        it again on the same port, with the stack's settings updated by `settings`."""
        if kill:
            self.api.kill9()
        self.api.stop()
        port = int(self.base.rsplit(":", 1)[1])
        api, _ = start_api(self.url, port=port, **{**self.settings, **settings})
        self.procs[self.procs.index(self.api)] = self.api = api
        return api

    def start_worker(self, models=None, wait_ready: bool = True, gpu=None, **settings) -> Proc:
        """Another worker (models None: every model in the repository), with the stack's
        settings updated by `settings`; waits until it serves `models` unless told not to."""
        proc = start_worker(self.url, models=models, wait_ready=False, gpu=gpu,
                            **{**self.settings, **settings})
        self.procs.append(proc)
        if wait_ready:
            models = models or ["shapes"]
            wait_for(lambda: _serving(proc, self.client, models), 120,
                     f"worker {proc.pid} to serve {models}", 0.2)
        return proc

    def start_webhook_worker(self, **settings) -> Proc:
        proc = start_webhook_worker(self.url, **{**self.settings, **settings})
        self.procs.append(proc)
        return proc

    def start_feeder(self, **settings) -> Proc:
        proc = start_feeder(self.url, **{**self.settings, **settings})
        self.procs.append(proc)
        return proc

    def close(self):
        for proc in reversed(self.procs):
            try:
                if proc.alive():
                    os.killpg(proc.pid, signal.SIGCONT)  # a test may have left it stopped
                proc.stop()
            except Exception:  # keep stopping the rest
                pass
        self.procs = []
        self.client.close()
        if self.group:
            self.group.stop()
        else:
            self.redis.stop()
        if self._batch_dir:
            shutil.rmtree(self._batch_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
