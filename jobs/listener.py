"""One pub/sub connection per process for every thread that waits for a job to finish (long-polls,
`Prefer: wait`, the synchronous protocols), instead of one connection per waiting request.

A thread subscribes once to the pattern of every job's finished channel and wakes the threads
waiting on the job a message names. Only that thread reads or writes its connection, so there
is nothing to lock around the socket. Every process receives every finish: a dict lookup and a
few microseconds each, far less than a connection (and its handshake) per wait.

After a lost connection (a Redis restart), the thread connects and subscribes again, then wakes
every waiter: each reads its job again, so a finish published while it was away is not missed.
The thread stops when nobody has waited for `idle_exit_s`, and starts again on the next wait."""
import logging
import os
import threading
import time
from contextlib import contextmanager

from jobs import keys

log = logging.getLogger("inferq.listener")
POLL_S = 5.0  # an idle connection is checked (PING) this often


class Waiter(threading.Event):
    """Set when the job may have finished; `take_message()` is the finish message, if one came
    (the job's final record, or its status: jobs.record.published_record reads it)."""

    message: bytes | None = None

    def take_message(self) -> bytes | None:
        message, self.message = self.message, None
        return message


class FinishListener:
    def __init__(self, redis, idle_exit_s: float = 60.0):
        pool = redis.connection_pool
        kwargs = dict(pool.connection_kwargs)
        # Its own connection, outside the pool; RESP2 pub/sub replies, as bytes; no health-check
        # PING from redis-py (this thread sends its own when the connection is idle).
        kwargs.update(health_check_interval=0, protocol=2, decode_responses=False)
        self._connection = lambda: pool.connection_class(**kwargs)
        self._pattern = keys.finished("*")
        self._prefix_len = len(keys.finished("").encode())
        self.idle_exit_s = idle_exit_s
        self._lock = threading.Lock()
        self._waiting: dict[bytes, list[Waiter]] = {}  # job id -> its waiters
        self._last_wait = time.monotonic()
        self._ready = threading.Event()  # set while the subscription is confirmed
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    @contextmanager
    def watch(self, job_id: str, timeout_s: float):
        """A Waiter (an Event) set when `job_id` may have finished. Once inside the block, no
        finish can be missed: read the job there, then wait on the Event. While the listener is
        (re)connecting, waits (up to `timeout_s`) until it is subscribed, or fails to connect."""
        key = job_id.encode()
        event = Waiter()
        with self._lock:
            self._waiting.setdefault(key, []).append(event)
            if self._thread is None or self._pid != os.getpid():  # none yet, or forked
                self._start()
        try:
            if not self._ready.is_set():
                # (Re)connecting: it wakes every waiter once subscribed, or when it fails.
                event.wait(timeout_s)
                event.clear()
            yield event
        finally:
            with self._lock:
                waiters = self._waiting.get(key, [])
                if event in waiters:
                    waiters.remove(event)
                if not waiters:
                    self._waiting.pop(key, None)
                self._last_wait = time.monotonic()

    def _start(self):
        self._pid = os.getpid()
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name="inferq-finish-listener",
                                        daemon=True)
        self._thread.start()

    def _wake_all(self):
        with self._lock:
            for waiters in self._waiting.values():
                for event in waiters:
                    event.set()

    def _run(self):
        failures = 0
        while True:
            conn = self._connection()
            try:
                conn.connect()
                conn.send_command("PSUBSCRIBE", self._pattern, check_health=False)
                if self._listen(conn):
                    return  # idle: stopped
                failures = 0
            except Exception as exc:  # connection lost or refused
                self._ready.clear()
                if failures == 0:
                    log.warning("finish listener: %s; reconnecting", exc)
                failures += 1
                with self._lock:
                    if not self._waiting:  # nobody waits: stop; the next wait starts again
                        self._thread = None
                        return
                # Waiters read their job again (and see Redis is down, or that it finished).
                self._wake_all()
                time.sleep(min(2.0, 0.05 * 2 ** failures))
            finally:
                conn.disconnect()

    def _listen(self, conn) -> bool:
        """Dispatch messages until the connection fails (raises) or nobody has waited for
        `idle_exit_s` (returns True)."""
        ping_sent = False
        poll_s = min(POLL_S, max(0.05, self.idle_exit_s))
        while True:
            if not conn.can_read(timeout=poll_s):
                with self._lock:
                    if (not self._waiting
                            and time.monotonic() - self._last_wait > self.idle_exit_s):
                        self._thread = None
                        self._ready.clear()
                        return True
                if ping_sent:
                    raise ConnectionError(f"no answer to PING in {poll_s:g} s")
                conn.send_command("PING", check_health=False)
                ping_sent = True
                continue
            reply = conn.read_response(disconnect_on_error=False)
            ping_sent = False
            kind = reply[0] if isinstance(reply, list) and reply else None
            if kind == b"pmessage":
                key = reply[2][self._prefix_len:]
                with self._lock:
                    for event in self._waiting.get(key, ()):
                        event.message = reply[3]
                        event.set()
            elif kind == b"psubscribe":
                self._ready.set()
                # Subscribed again after a lost connection: a job may have finished meanwhile.
                self._wake_all()
