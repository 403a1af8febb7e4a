"""The load generator: closed-loop clients on keep-alive HTTP/1.1 connections, written on bare
asyncio streams because on a 2-core machine every millisecond the client spends is taken from
the server (a `requests` call costs several times what this one does). Its own CPU time is
measured by the caller from /proc and reported beside the results.

Modes (each client repeats its cycle until --end-at, then finishes the cycle it is in):
  e2e     POST /v1/models/<model>/jobs (multipart image), then GET <job url>?wait=30
  naive   POST /predict (multipart image): the Flask + model.predict baseline
  submit  POST /v1/models/<model>/jobs only (the API alone, nothing runs the jobs)

python -m bench.loadgen --mode e2e --port P --model M --clients C --images DIR
                        --start-at T0 --end-at T1     (CLOCK_MONOTONIC seconds)
   or   --jobs N --warmup W   (one client: N timed cycles after W untimed ones)
        [--in-process MODEL_FILE --size S]   (and after each cycle, the same model called
                                              in-process on one image: bench.ceiling --serve)
Writes one JSON line: per cycle [start, end, batch_size] (monotonic seconds), errors."""
import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.common import multipart

WAIT_S = 30
STOP = False  # set by SIGUSR1: each client ends the cycle it is in, then stops


def _stop(*_):
    global STOP
    STOP = True


class HttpError(Exception):
    pass


class Conn:
    """One keep-alive HTTP/1.1 connection; reopens itself when the server closed it."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
        for attempt in (0, 1):
            if self.writer is None:
                await self._open()
            try:
                raw = await self._send(head, body)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
                continue  # the server closed an idle keep-alive connection: open another
            status, length, close = parse_head(raw)
            data = await self._read(length) if length else b""
            if close:
                self.close()
            return status, data
        raise HttpError("unreachable")

    async def _open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def _send(self, head: bytes, body: bytes) -> bytes:
        """Send a request; returns the response's head."""
        self.writer.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.writer.write(body)
        return await self.reader.readuntil(b"\r\n\r\n")

    async def _read(self, length: int) -> bytes:
        return await self.reader.readexactly(length)

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class BlockingConn(Conn):
    """The idle run's one client: plain blocking socket calls, so a reply wakes the client
    directly. Through asyncio's loop, each cycle cost about 0.4 ms more here: the load
    generator's time, not inferq's."""

    async def _open(self):
        sock = socket.create_connection((self.host, self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.writer, self.reader = sock, sock.makefile("rb")

    async def _send(self, head: bytes, body: bytes) -> bytes:
        self.writer.sendall(head + body)
        raw = b""
        while not raw.endswith(b"\r\n\r\n"):
            line = self.reader.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            raw += line
        return raw

    async def _read(self, length: int) -> bytes:
        return self.reader.read(length)

    def close(self):
        if self.reader is not None:
            self.reader.close()
        super().close()


class InProcess:
    """The model called in a process of its own (bench.ceiling --serve), between the idle run's
    jobs and between run 2's windows: measured in the same minutes as inferq, as a shared VM's
    speed drifts by tens of percent within minutes."""

    def __init__(self, model_file: str, size: int, batch: int = 1):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.ceiling", "--serve", "--model-file", model_file,
             "--size", str(size), "--batch", str(batch)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        if not self.proc.stdout.readline():
            raise HttpError("bench.ceiling --serve did not start")

    def _ask(self, line: str) -> float:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def call(self) -> float:
        """One image through the model: ms."""
        return self._ask("")

    def batches(self, n: int) -> float:
        """`n` batches through the model: images/s."""
        return self._ask(f"batches {n}")

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(30)


def parse_head(raw: bytes) -> tuple[int, int, bool]:
    """An HTTP response head: (status, Content-Length, whether the server closes)."""
    length, close = 0, False
    for line in raw.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    return int(raw[9:12]), length, close


def post_head(path: str, host: str, ctype: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


class Client:
    def __init__(self, args, bodies, errors, conn_class=Conn):
        self.a, self.bodies, self.errors = args, bodies, errors
        self.host = f"127.0.0.1:{args.port}"
        self.conn = conn_class("127.0.0.1", args.port)
        self.records = []
        self.stages = []

    async def cycle(self, i: int):
        body, ctype = self.bodies[i % len(self.bodies)]
        mode = self.a.mode
        t0, wall0 = time.monotonic(), time.time()
        path = "/predict" if mode == "naive" else f"/v1/models/{self.a.model}/jobs"
        status, data = await self.conn.request(post_head(path, self.host, ctype, len(body)), body)
        if mode == "naive":
            if status != 200:
                raise HttpError(f"POST /predict: {status} {data[:300]!r}")
            self.records.append((t0, time.monotonic(), 1))
            return
        if status != 202:
            raise HttpError(f"POST {path}: {status} {data[:300]!r}")
        if mode == "submit":
            self.records.append((t0, time.monotonic(), 0))
            return
        job_id = json.loads(data)["id"]
        head = (f"GET /v1/jobs/{job_id}?wait={WAIT_S} HTTP/1.1\r\nHost: {self.host}\r\n\r\n"
                ).encode()
        status, data = await self.conn.request(head)
        job = json.loads(data)
        if status != 200 or job.get("status") != "succeeded":
            raise HttpError(f"GET job {job_id}: {status} {data[:300]!r}")
        self.records.append((t0, time.monotonic(), job["metrics"]["batch_size"]))
        if self.a.jobs:  # the idle run: where the time went, from the job's own timestamps
            m = job["metrics"]
            self.stages.append((wall0, time.time(), job["created_at"], job["started_at"],
                                job["completed_at"], m["queue_ms"], m["predict_ms"]))

    async def run_until(self, start_at: float, end_at: float, offset: int):
        i = offset
        while time.monotonic() < end_at and not STOP:
            try:
                await self.cycle(i)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                self.errors.append(f"{type(exc).__name__}: {exc}"[:400])
                self.conn.close()
                await asyncio.sleep(0.05)
            i += 1
        self.conn.close()


async def main_async(a):
    files = sorted(Path(a.images).iterdir()) if Path(a.images).is_dir() else [Path(a.images)]
    bodies = [multipart(f.read_bytes(), "image" + f.suffix) for f in files]
    errors: list[str] = []
    in_process_ms: list[float] = []
    if a.jobs:  # one client, sequential: latency when idle
        client = Client(a, bodies, errors, BlockingConn)
        model = InProcess(a.in_process, a.size) if a.in_process else None
        for i in range(a.warmup):
            await client.cycle(i)
            if model:
                model.call()
        client.records.clear()
        client.stages.clear()
        for i in range(a.jobs):
            try:
                await client.cycle(i)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{type(exc).__name__}: {exc}"[:400])
                client.conn.close()
            if model:
                in_process_ms.append(model.call())
        client.conn.close()
        if model:
            model.close()
        records, stages = client.records, client.stages
    else:
        stages = []
        clients = [Client(a, bodies, errors) for _ in range(a.clients)]
        delay = a.start_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await asyncio.gather(*(c.run_until(a.start_at, a.end_at, k * 7)
                               for k, c in enumerate(clients)))
        records = [r for c in clients for r in c.records]
    cpu = os.times()
    print(json.dumps({"records": [[round(s, 4), round(e, 4), b] for s, e, b in records],
                      "stages": [list(x) for x in stages], "in_process_ms": in_process_ms,
                      "errors": len(errors),
                      "error_samples": errors[:5],
                      # with the processes it started and waited for (bench.ceiling --serve)
                      "cpu_s": cpu.user + cpu.system + cpu.children_user + cpu.children_system}))


def main():
    signal.signal(signal.SIGUSR1, _stop)
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("e2e", "naive", "submit"), required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", default="")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--images", required=True, help="a file, or a directory of images")
    ap.add_argument("--start-at", type=float, default=0.0)
    ap.add_argument("--end-at", type=float, default=0.0)
    ap.add_argument("--jobs", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--in-process", default="", help="a .keras file (with --jobs)")
    ap.add_argument("--size", type=int, default=224)
    a = ap.parse_args()
    asyncio.run(main_async(a))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
