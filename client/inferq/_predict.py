"""`inferq predict`'s engine: many images, `concurrency` at a time, sent as jobs of up to
GROUP images over kept-open connections (one submit and one long-poll per job, not per image:
on a machine the client shares with the server, each request's CPU comes off the model).
Ctrl-C stops submitting: the images in flight finish (a second Ctrl-C abandons them), what
finished is kept."""
import asyncio
import signal
from dataclasses import dataclass

from . import _calls
from .errors import InferqError, InvalidInput, JobFailed, is_fatal
from .images import image_bytes

GROUP = 8  # images in one job
GROUP_BYTES = 4 * 1024 * 1024  # a job's images together; the API refuses bodies past its limit


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
    group = max(1, min(GROUP, concurrency))

    def finish(path: str, outputs=None, error: dict | None = None):
        entry = {"path": path}
        if error is None:
            entry["outputs"] = outputs[:top_k] if top_k and isinstance(outputs, list) \
                else outputs
        else:
            entry["error"] = error
        run.done += 1
        run.failed += error is not None
        record(entry)

    def take() -> list[tuple[str, bytes]]:
        """The next paths, read, up to `group` of them and GROUP_BYTES together (at least one);
        an unreadable one is recorded at once."""
        taken, size = [], 0
        for path in todo:
            try:
                data = image_bytes(path)
            except OSError as exc:  # gone, a permission
                finish(path, error={"code": "unreadable", "message": str(exc)})
                continue
            taken.append((path, data))
            size += len(data)
            if len(taken) == group or size >= GROUP_BYTES:
                break
        return taken

    async def send(client, items: list[tuple[str, bytes]]):
        try:
            job = await client._run(_calls.run_job(model, [d for _, d in items], version,
                                                   timeout_s))
        except InvalidInput as exc:
            if len(items) == 1:
                finish(items[0][0], error={"code": exc.code, "message": exc.message})
                return
            for item in items:  # one image the API refuses fails the whole job: find which
                try:
                    await send(client, [item])
                except InferqError as single:
                    if is_fatal(single):
                        raise
                    finish(item[0], error={"code": single.code, "message": single.message})
            return
        for i, (path, _) in enumerate(items):
            try:
                finish(path, _calls.result(job, i))
            except JobFailed as exc:
                finish(path, error={"code": exc.code, "message": exc.message})

    async def one_job_at_a_time(client):
        while not run.stopping:
            items = take()
            if not items:
                return
            try:
                await send(client, items)
            except InferqError as exc:
                if is_fatal(exc):
                    run.fatal, run.stopping = exc, True
                    return
                for path, _ in items:
                    finish(path, error={"code": exc.code, "message": exc.message})

    loop = asyncio.get_running_loop()
    workers = asyncio.gather(*(one_job_at_a_time(clients[i % len(clients)])
                               for i in range(max(1, -(-concurrency // group)))))

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
