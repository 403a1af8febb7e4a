"""One model version served in its own process. The worker's supervisor starts it (spawned, not
forked) and ends it to unload the model. Ending a process is the only way to return a
TensorFlow model's memory, on a GPU above all."""
import ctypes
import logging
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

from jobs import connection

log = logging.getLogger("inferq.worker")
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """If the supervisor dies (even by SIGKILL), this process gets SIGKILL too: a model must not
    go on serving, unseen by heartbeats, without its worker."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux: the parent check in the main loop still ends it


def main(spec, settings, consumer_name: str, conn, parent_pid: int):
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logging.basicConfig(level=settings.log_level,
                        format=f"[%(asctime)s: %(levelname)s/{spec.name}:v{spec.version}] "
                               f"%(message)s")
    from worker.loop import ModelLoop
    from worker.predictor import Predictor

    try:
        predictor = Predictor(spec)
        predictor.warm_up()
    except Exception as exc:
        log.exception("model %s v%d cannot be served", spec.name, spec.version)
        conn.send(("error", f"{type(exc).__name__}: {str(exc).strip()[:500]}"))
        return
    redis = connection.client(settings, socket_timeout=10, health_check_interval=30)
    pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="inferq-decode")
    loop = ModelLoop(predictor, redis, consumer_name, settings, pool)
    loop.start()
    conn.send(("ready", {"device": predictor.device, "output_shape": predictor.output_shape}))
    try:
        while not stop.is_set() and os.getppid() == parent_pid:
            if conn.poll(0.2):
                command = conn.recv()
                if command == "drain":
                    loop.drain()
                elif command == "stop":
                    break
            if loop.drained.is_set():
                log.info("model %s v%d drained", spec.name, spec.version)
                break
    except (EOFError, OSError):
        pass  # the supervisor is gone
    loop.stop()
    pool.shutdown(wait=False)
    try:
        conn.send(("stopped", None))
    except (OSError, ValueError):
        pass
