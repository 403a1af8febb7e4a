"""`inferq predict`'s engine: many images, `concurrency` at a time, each submitted with
`Prefer: wait` over a kept-open connection. Ctrl-C stops submitting: the images in flight
finish (a second Ctrl-C abandons them), what finished is kept."""
import asyncio
import signal
from dataclasses import dataclass

from . import _calls
from .errors import InferqError, is_fatal


@dataclass
class Run:
    done: int = 0
    failed: int = 0
    stopping: bool = False  # Ctrl-C: no more submits
    interrupted: bool = False
    fatal: InferqError | None = None


async def predict_all(clients: list, model: str, paths: list[str], record, *,
                      concurrency: int, version=None, timeout_s: float = 300.0,
                      top_k: int | None = None, on_stop=None) -> Run:
    """Predict each path, `concurrency` at a time, spread over `clients` (AsyncClients);
    `record(entry)` gets each `{"path", "outputs" | "error"}` as it finishes. `on_stop()` is
    called at the first Ctrl-C."""
    run, todo = Run(), iter(paths)

    async def one_at_a_time(client):
        for path in todo:
            if run.stopping:
                return
            entry = {"path": path}
            try:
                outputs = await client._run(_calls.predict(model, path, version, timeout_s,
                                                           wait_on_submit=False))
                if top_k and isinstance(outputs, list):
                    outputs = outputs[:top_k]
                entry["outputs"] = outputs
            except InferqError as exc:
                if is_fatal(exc):
                    run.fatal, run.stopping = exc, True
                    return
                entry["error"] = {"code": exc.code, "message": exc.message}
            except OSError as exc:  # unreadable: gone, a permission
                entry["error"] = {"code": "unreadable", "message": str(exc)}
            run.done += 1
            run.failed += "error" in entry
            record(entry)

    loop = asyncio.get_running_loop()
    workers = asyncio.gather(*(one_at_a_time(clients[i % len(clients)])
                               for i in range(max(1, concurrency))))

    def interrupt():
        if run.stopping:
            workers.cancel()
            return
        run.stopping = run.interrupted = True
        if on_stop:
            on_stop()

    try:
        loop.add_signal_handler(signal.SIGINT, interrupt)
    except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
        pass
    try:
        await workers
    except asyncio.CancelledError:
        run.interrupted = True
    finally:
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError):
            pass
    return run
