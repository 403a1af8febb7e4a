"""`make run`: the whole stack on this machine. A private Redis (unless INFERQ_REDIS_URL is
set), the API under gunicorn, one inference worker serving the model repository, the webhook
worker and the batch feeder; a banner with a `curl` line once the demo model itself serves.

Ctrl-C, SIGTERM or SIGHUP, sent to this process or to the `make` running it, stops every
process it started: the workers and the API first (the inference worker finishes its batch,
which needs Redis), Redis last. A second Ctrl-C kills what is left at once.

Each process writes all its output to <run dir>/<name>.log. The terminal shows those lines
after the process's name, less TensorFlow's start-up notes and Redis's own lines
(INFERQ_LOG_LEVEL=debug shows everything, and makes each process log everything too).
"""
import base64
import ctypes
import ipaddress
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.preflight import check  # noqa: E402  (the checkout is not installed)
from jobs.settings import SettingsError  # noqa: E402

DEMO_MODEL = "shapes"
READY_TIMEOUT_S = 180
STOP_TIMEOUT_S = 60  # the inference worker's batch in hand, as compose's stop_grace_period
TAIL_LINES = 20
PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# TensorFlow writes these C++ INFO lines (oneDNN, CPU features) before it reads
# TF_CPP_MIN_LOG_LEVEL, with absl's note that it does so. They stay in the log file.
NOISE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called"
                   r"|I\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] ")


def say(message: str, err: bool = False):
    print(f"inferq: {message}", file=sys.stderr if err else sys.stdout, flush=True)


try:
    LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    LIBC = None  # not glibc: the parent check in the main loop still notices


def die_with_parent():
    """SIGTERM when the parent process dies, even by SIGKILL (Linux). Also run in each child
    between fork and exec, so nothing outlives this script if it is killed."""
    if LIBC is not None:
        LIBC.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))


class Stops:
    """Stop requests: signals to this process, and signals to `make` when make runs it.

    make passes SIGTERM on to its children, but on SIGINT sent to make alone it passes nothing:
    it resets its handler to the default and waits for its children before it dies. A make
    parent that stops catching a signal it caught is therefore handling that signal."""

    def __init__(self):
        self.count = 0
        self.reason = ""
        # Reset, not only trapped: a shell that starts a background job without job control
        # leaves SIGINT ignored in it, and an ignored signal never reaches a handler.
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        die_with_parent()
        self.parent = os.getppid()
        self.make = _comm(self.parent) in ("make", "gmake")
        self.make_caught = _caught(self.parent) if self.make else set()

    def _on_signal(self, signum, _frame):
        self.count += 1
        self.reason = self.reason or signal.Signals(signum).name

    def poll(self) -> bool:
        """Whether a stop was asked for (looking at the parent as well)."""
        if not self.count and os.getppid() != self.parent:
            self.count, self.reason = 1, "its parent process exited"
        elif not self.count and self.make:
            lost = self.make_caught - _caught(self.parent)
            if lost:
                self.count, self.reason = 1, f"make got {min(lost).name}"
        return self.count > 0


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _caught(pid: int) -> set:
    """The stop signals process `pid` has a handler for (/proc/<pid>/status SigCgt)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                mask = int(line.split()[1], 16)
                return {s for s in (*STOP_SIGNALS, signal.SIGQUIT) if mask >> (s - 1) & 1}
    except (OSError, ValueError):
        pass
    return set()


class Service:
    """A process this script started, in a session of its own (Ctrl-C in the terminal reaches
    only this script, which stops them in order), its output in <run dir>/<log>.log."""

    def __init__(self, name: str, log: str, args: list[str], env: dict, run_dir: Path,
                 quiet: bool):
        self.name, self.log = name, log
        self.log_path = run_dir / f"{log}.log"
        self.quiet = quiet
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=die_with_parent)
        self.pid = self.proc.pid
        self._read = 0
        self._partial = b""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def group_alive(self) -> bool:
        try:
            os.killpg(self.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def kill_group(self, sig: int):
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def echo(self, width: int):
        """Print the lines written to the log since the last call."""
        if self.quiet and self.log == "redis":
            return  # its start-up notes and host tuning advice: in redis.log, for debug
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._read)
                data = f.read()
        except OSError:
            return
        self._read += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace").rstrip()
            if line and not (self.quiet and NOISE.match(line)):
                print(f"{self.log:<{width}} | {line}", flush=True)

    def tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "  (no log)"
        return "\n".join(f"  {line}" for line in lines[-TAIL_LINES:]) or "  (its log is empty)"


class Stack:
    """The processes started so far: Redis, and the others in the order they are stopped."""

    def __init__(self, env: dict, run_dir: Path, quiet: bool, stops: Stops):
        self.env, self.run_dir, self.quiet, self.stops = env, run_dir, quiet, stops
        self.redis: Service | None = None
        self.services: list[Service] = []  # the last started first

    def start(self, name, log, args) -> Service:
        service = Service(name, log, args, self.env, self.run_dir, self.quiet)
        if log == "redis":
            self.redis = service
        else:
            self.services.insert(0, service)
        return service

    def all(self) -> list[Service]:
        return self.services + ([self.redis] if self.redis else [])

    def echo(self):
        width = max(len(s.log) for s in self.all()) if self.all() else 0
        for service in reversed(self.all()):
            service.echo(width)

    def exited(self) -> Service | None:
        return next((s for s in self.all() if not s.alive()), None)

    def report_exit(self, service: Service, starting: bool):
        self.echo()
        when = " during start-up" if starting else ""
        say(f"the {service.name} exited{when} (exit status {service.proc.returncode}); "
            f"the last lines of {service.log_path}:\n{service.tail()}", err=True)

    def stop(self):
        """Workers and API first, all at once; Redis once they are gone."""
        for group in (self.services, [self.redis] if self.redis else []):
            for service in group:
                if service.alive():
                    service.proc.send_signal(signal.SIGTERM)
            self._wait(group)
        self.echo()

    def _wait(self, group: list[Service]):
        deadline = time.monotonic() + STOP_TIMEOUT_S
        forced = False
        while any(s.alive() for s in group):
            self.stops.poll()
            if not forced and (self.stops.count > 1 or time.monotonic() > deadline):
                forced = True
                for s in group:
                    if s.alive():
                        say(f"the {s.name} did not stop: killing it", err=True)
                        s.kill_group(signal.SIGKILL)
            self.echo()
            time.sleep(0.1)
        for s in group:  # what a process leaves behind (its own children) goes with it
            if s.group_alive():
                s.kill_group(signal.SIGKILL)


def dev_file(path: Path, make) -> str:
    """A development secret, made once and kept in the run directory."""
    if not path.is_file() or not path.read_text().strip():
        path.write_text(make() + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def reach(host: str) -> tuple[str, str]:
    """Who can reach the API bound to `host`, and the host name that reaches it from here."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if host == "localhost" or (address and address.is_loopback):
        return "this machine only; INFERQ_API_HOST=0.0.0.0 opens it to others", "localhost"
    if address and address.is_unspecified:
        return "on every interface of this machine", "localhost"
    return f"on {host}", url_host(host)


def url_host(host: str) -> str:
    """Where this machine reaches the API bound to `host`."""
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"[{host}]" if ":" in host else host


def readiness(base: str) -> dict | None:
    """/readyz's answer when it says ready, else None."""
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=2) as resp:
            return json.load(resp)
    except (OSError, ValueError):
        return None


def not_ready_reason(base: str) -> str:
    try:
        urllib.request.urlopen(f"{base}/readyz", timeout=2)
    except urllib.error.HTTPError as exc:
        return exc.read().decode(errors="replace")
    except OSError as exc:
        return str(exc)
    return "ready"


def main() -> int:
    os.chdir(ROOT)
    stops = Stops()
    venv = Path(os.environ.get("VENV", ".venv"))
    run_dir = Path(os.environ.get("INFERQ_RUN_DIR") or ".run")
    (run_dir / "redis").mkdir(parents=True, exist_ok=True)
    run_dir = run_dir.resolve()

    env = dict(os.environ)
    env.setdefault("INFERQ_API_HOST", "127.0.0.1")
    env.setdefault("INFERQ_API_PORT", "8000")
    # Models may name custom objects in modules of this checkout (config "custom_objects").
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"  # each line reaches its log file when it is written
    # Webhooks are signed; without a secret of yours, a development one is made once and kept.
    dev_secret = not env.get("INFERQ_WEBHOOK_SECRET")
    if dev_secret:
        env["INFERQ_WEBHOOK_SECRET"] = dev_file(
            run_dir / "webhook_secret",
            lambda: "whsec_" + base64.b64encode(os.urandom(24)).decode())
    # Unless you set keys, a development key is made once and kept: an admin key (tenant
    # "dev"), so it can also upload and remove models.
    dev_key = None
    if not (env.get("INFERQ_API_KEYS") or env.get("INFERQ_ADMIN_KEYS")):
        dev_key = dev_file(run_dir / "dev_key", lambda: "iq_dev_" + secrets.token_urlsafe(24))
        env["INFERQ_ADMIN_KEYS"] = f"{dev_key}=dev"

    try:
        settings = check(env)
    except SettingsError as exc:
        say(str(exc), err=True)
        return 2
    redis_port = os.environ.get("INFERQ_REDIS_PORT") or str(free_port())
    if not redis_port.isdigit() or not 0 < int(redis_port) < 65536:
        say(f"INFERQ_REDIS_PORT must be a port number, got {redis_port!r}", err=True)
        return 2
    host, port = settings.api_host, settings.api_port
    if not port_free(host, port):
        say(f"port {port} on {host} is in use (another inferq?): set INFERQ_API_PORT to a "
            "free port", err=True)
        return 2
    quiet = settings.log_level != "DEBUG"
    level = settings.log_level
    stack = Stack(env, run_dir, quiet, stops)
    try:
        return run(stack, env, venv, settings, level, int(redis_port), dev_key, dev_secret)
    finally:
        if stops.count:
            say(f"stopping ({stops.reason}): the workers and the API, then Redis")
        elif any(s.alive() for s in stack.all()):
            say("stopping the other processes")
        stack.stop()
        if stops.count:
            say("stopped")


def run(stack: Stack, env: dict, venv: Path, settings, level: str, redis_port: int, dev_key,
        dev_secret) -> int:
    stops, run_dir, quiet = stack.stops, stack.run_dir, stack.quiet
    if not os.environ.get("INFERQ_REDIS_URL"):
        # AOF fsynced every second; noeviction so a full Redis refuses new jobs instead of
        # dropping queued ones; hz 100 so short blocking reads return on time.
        redis = stack.start("Redis", "redis", [
            "redis-server", "--bind", "127.0.0.1", "--port", str(redis_port),
            "--dir", str(run_dir / "redis"), "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", "", "--hz", "100",
            "--maxmemory", os.environ.get("INFERQ_REDIS_MAXMEMORY") or "0",
            "--maxmemory-policy", "noeviction",
            "--loglevel", "warning" if quiet else "notice"])
        env["INFERQ_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        deadline = time.monotonic() + 10
        while not redis_answers(redis_port):
            if stops.poll():
                return 0
            if not redis.alive():
                stack.report_exit(redis, starting=True)
                return 1
            if time.monotonic() > deadline:
                say(f"Redis did not answer in 10 s; see {redis.log_path}", err=True)
                return 1
            time.sleep(0.05)
        say(f"Redis on {env['INFERQ_REDIS_URL']} (data in {run_dir / 'redis'})")

    celery = [str(venv / "bin" / "celery")] + (["--quiet"] if quiet else [])
    stack.start("API", "api", [str(venv / "bin" / "gunicorn"), "-c", "api/gunicorn_conf.py",
                               "api.app:create_app()"])
    stack.start("worker", "worker", celery + [
        "-A", "worker.app", "worker", "--loglevel", level, "--hostname", "inferq-worker@%h"])
    stack.start("webhook worker", "webhooks", celery + [
        "-A", "webhooks.app", "worker", "--loglevel", level, "--hostname", "inferq-webhooks@%h"])
    stack.start("feeder", "feeder", celery + [
        "-A", "feeder.app", "worker", "--loglevel", level, "--hostname", "inferq-feeder@%h"])

    host, port = settings.api_host, settings.api_port
    base = f"http://{url_host(host)}:{port}"
    demo = demo_model(settings)
    waiting_for = f"the demo model {demo}" if demo else "a model"
    say(f"waiting for the worker to load and warm {waiting_for} ...")
    deadline = time.monotonic() + READY_TIMEOUT_S
    next_check = 0.0
    ready, served = None, []
    while not ready:
        stack.echo()
        if stops.poll():
            return 0
        service = stack.exited()
        if service:
            stack.report_exit(service, starting=True)
            return 1
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + 0.5
            answer = readiness(base)
            if answer and (demo in answer.get("models", []) if demo else answer):
                ready = answer
            elif answer and answer.get("models") != served:
                served = answer.get("models")
                say(f"serving {', '.join(served)}; waiting for {demo}")
        if time.monotonic() > deadline:
            say(f"no worker served {waiting_for} in {READY_TIMEOUT_S} s; the worker's log "
                f"above says why. /readyz says: {not_ready_reason(base)}", err=True)
            return 1
        time.sleep(0.1)
    stack.echo()
    print(banner(host, port, demo, ready, run_dir, dev_key, dev_secret, env), flush=True)
    # Up until a stop is asked for, or one of the processes exits.
    while not stops.poll():
        stack.echo()
        service = stack.exited()
        if service:
            stack.report_exit(service, starting=False)
            return 1
        time.sleep(0.2)
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def demo_model(settings) -> str | None:
    """The model the banner's example names: the demo model, when this repository has it and
    INFERQ_MODELS (if set) names it; else None (the banner waits for any model)."""
    served = not settings.model_names or DEMO_MODEL in settings.model_names
    has = (Path(settings.model_repository) / DEMO_MODEL).is_dir()
    return DEMO_MODEL if served and has else None


def banner(host, port, demo, ready, run_dir, dev_key, dev_secret, env) -> str:
    who, where = reach(host)
    auth = (f"-H 'Authorization: Bearer {dev_key}' " if dev_key
            else "-H \"Authorization: Bearer $KEY\" ")
    lines = ["", f"inferq is ready on http://{where}:{port} ({who}). Ctrl-C stops it.",
             f"Console: http://{where}:{port}/console"
             + (" (sign in with the development key below)" if dev_key else "")]
    if demo:
        lines += ["Try:",
                  f"  curl {auth}-F image=@examples/circle.png "
                  f"{where}:{port}/v1/models/{demo}/jobs",
                  f"  curl {auth}'{where}:{port}/v1/jobs/<id>?wait=10'"]
    else:
        lines += [f"Models served: {', '.join(ready.get('models', []))}"]
    lines += [""]
    if dev_key:
        lines += [f"Development API key (tenant dev, admin; kept in {run_dir / 'dev_key'}):",
                  f"  {dev_key}"]
    else:
        lines += ["API keys: yours (INFERQ_API_KEYS / INFERQ_ADMIN_KEYS)."]
    lines += [""]
    if dev_secret:
        lines += [f"Webhooks are signed with INFERQ_WEBHOOK_SECRET={env['INFERQ_WEBHOOK_SECRET']}"]
    else:
        lines += ["Webhooks are signed with your INFERQ_WEBHOOK_SECRET."]
    return "\n".join(lines + [""])


if __name__ == "__main__":
    sys.exit(main())
