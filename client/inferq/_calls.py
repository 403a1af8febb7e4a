"""The API's calls, written once for both clients. Each call is a generator that yields the
requests it needs (`Call`) and is sent each response back, so that `Client` and `AsyncClient`
differ only in how they send (a loop here, `await` there), never in what they ask or how they
read the answers."""
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx

from . import _config
from ._inputs import job_body
from .errors import Conflict, InferqError, JobFailed, Unauthorized, WaitTimeout, from_status

# A long-poll asks for at most this; the server cuts it to its own INFERQ_MAX_LONG_POLL_S.
LONG_POLL_S = 30.0
# Reading an answer may take this long beyond the wait it was asked for.
READ_SLACK_S = 30.0
JOB_FINAL = frozenset({"succeeded", "failed", "canceled"})
BATCH_FINAL = frozenset({"completed", "failed", "cancelled", "expired"})


@dataclass
class Call:
    method: str
    path: str
    kwargs: dict = field(default_factory=dict)  # httpx's: params, headers, content, json, ...


def timeout(wait_s: float | None = None) -> httpx.Timeout:
    return httpx.Timeout(10.0, read=(wait_s or 0) + READ_SLACK_S, write=60.0, pool=None)


def idempotent(headers: dict | None = None) -> dict:
    """Headers with a fresh Idempotency-Key: the transport may then send the POST again, and
    the server answers a repeat with the first job."""
    return {**(headers or {}), "Idempotency-Key": uuid.uuid4().hex}


def check(response: httpx.Response):
    """The answer's JSON; an error answer raises its typed InferqError."""
    if response.status_code < 400:
        try:
            return response.json() if response.content else None
        except ValueError:
            raise InferqError(f"{response.request.url} answered {response.status_code} with "
                              "something that is not JSON: is INFERQ_URL an inferq API?",
                              response.status_code, "not_json") from None
    code, message = None, None
    try:
        error = response.json().get("error")
        if isinstance(error, dict):
            code, message = error.get("code"), error.get("message")
        elif isinstance(error, str):
            message = error
    except (ValueError, AttributeError):  # not JSON, or not an object
        pass
    if message is None:
        message = f"HTTP {response.status_code} {response.reason_phrase}: " \
                  f"{response.text.strip()[:200]}"
    if response.status_code == 401 and "Authorization" not in response.request.headers:
        raise Unauthorized(_config.no_key_hint(), 401, code)
    raise from_status(response.status_code, code, message)


def models():
    return check((yield Call("GET", "/v1/models")))["models"]


def model(name: str):
    return check((yield Call("GET", f"/v1/models/{quote(name, safe='')}")))


def submit(model: str, inputs, version=None, webhook=None, events=None,
           wait_s: float | None = None):
    """POST a job; with `wait_s`, `Prefer: wait` (the answer is the finished job if it ends
    in time)."""
    path = f"/v1/models/{quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{int(version)}"
    body = job_body(inputs, webhook, events)
    headers = idempotent(body.pop("headers", None))
    if wait_s:
        headers["Prefer"] = f"wait={wait_s:g}"
    return check((yield Call("POST", path + "/jobs", {**body, "headers": headers,
                                                       "timeout": timeout(wait_s)})))


def get_job(job_id: str, wait_s: float | None = None):
    params = {"wait": f"{wait_s:g}"} if wait_s else None
    return check((yield Call("GET", f"/v1/jobs/{quote(job_id, safe='')}",
                             {"params": params, "timeout": timeout(wait_s)})))


def wait_job(job: dict, timeout_s: float | None = None, deadline: float | None = None):
    """Long-poll until the job ends; WaitTimeout once `timeout_s` (or the monotonic
    `deadline`) passes first. None: no limit."""
    if deadline is None and timeout_s is not None:
        deadline = time.monotonic() + timeout_s
    while job["status"] not in JOB_FINAL:
        left = LONG_POLL_S if deadline is None else deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(f"job {job['id']} is still {job['status']}", None, "timeout")
        job = yield from get_job(job["id"], min(left, LONG_POLL_S))
    return job


def cancel_job(job_id: str):
    path = f"/v1/jobs/{quote(job_id, safe='')}"
    try:
        return check((yield Call("POST", path + "/cancel", {"headers": idempotent()})))
    except Conflict:  # it ended first (or a retried cancel already did it): the job as it is
        return (yield from get_job(job_id))


def predict(model: str, image, version=None, timeout_s: float = 300.0):
    """One input's result: submitted with `Prefer: wait`, then long-polled."""
    deadline = time.monotonic() + timeout_s
    job = yield from submit(model, [image], version, wait_s=min(timeout_s, LONG_POLL_S))
    job = yield from wait_job(job, deadline=deadline)
    return result(job, 0)


def run_job(model: str, inputs: list, version=None, timeout_s: float = 300.0):
    """A job of `inputs`, submitted without waiting, then long-polled until it ends: the job.
    For many images in flight: a `Prefer: wait` holds one of the API's threads from the
    submit, so the images beyond its threads would wait outside the queue while the worker
    ran part-empty batches."""
    deadline = time.monotonic() + timeout_s
    job = yield from submit(model, inputs, version)
    return (yield from wait_job(job, deadline=deadline))


def result(job: dict, index: int):
    """Input `index`'s outputs: the top-k list for a model with labels, else the raw output
    row. A failed or canceled input raises JobFailed."""
    out = job["outputs"][index]
    if "error" in out:  # the worker's message
        error = out["error"]
        if isinstance(error, dict):
            raise JobFailed(str(error.get("message")), None, error.get("code"))
        raise JobFailed(str(error), None, "input_failed")
    if out.get("status") != "succeeded":
        raise JobFailed(f"job {job['id']} was {job['status']}", None, job["status"])
    return out["top_k"] if "top_k" in out else out.get("output")


# Batches

def create_batch(model: str, body: dict, params: dict):
    """POST a batch file (`body`: httpx content and headers). No Idempotency-Key: the server
    keeps none for batches, and a streamed body is sent once, never again."""
    path = f"/v1/models/{quote(model, safe='')}/batches"
    return check((yield Call("POST", path, {**body, "params": params, "timeout": timeout()})))


def get_batch(batch_id: str, wait_s: float | None = None):
    params = {"wait": f"{wait_s:g}"} if wait_s else None
    return check((yield Call("GET", f"/v1/batches/{quote(batch_id, safe='')}",
                             {"params": params, "timeout": timeout(wait_s)})))


def wait_batch(batch_id: str, timeout_s: float | None = None, poll_s: float = LONG_POLL_S,
               seen=None):
    """Until the batch ends. `seen(batch)` is called with each answer; `poll_s` is how long
    each long-poll waits for a change of status (counts move without one)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    batch = yield from get_batch(batch_id)
    while True:
        if seen:
            seen(batch)
        if batch["status"] in BATCH_FINAL:
            return batch
        left = poll_s if deadline is None else deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(f"batch {batch_id} is still {batch['status']}", None, "timeout")
        batch = yield from get_batch(batch_id, min(left, poll_s))


def cancel_batch(batch_id: str):
    # Cancelling twice is harmless: the key lets the transport send it again.
    path = f"/v1/batches/{quote(batch_id, safe='')}/cancel"
    return check((yield Call("POST", path, {"headers": idempotent()})))


def list_batches(limit: int = 100, after: str | None = None):
    params = {"limit": limit, **({"after": after} if after else {})}
    return check((yield Call("GET", "/v1/batches", {"params": params})))
