"""Synchronous inference for the standard protocols (TF Serving REST, KServe V2). Each request is
a job the API waits on: its inputs join the same micro-batches as asynchronous jobs. At the
deadline the job is canceled, so the workers skip what is left of it: nothing runs on after."""
import json

from api import auth
from jobs.producer import BacklogFull, NoVersion
from jobs.record import FINAL

DEFAULT_TIMEOUT_S = 30.0


class SyncError(Exception):
    """A protocol-neutral failure: `kind` is invalid, not_found, unavailable, deadline or
    internal; each protocol maps it to its own status code and error body."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


def timeout_s(value, cap_s: float) -> float:
    """The request's deadline in seconds (default 30), capped at `cap_s`."""
    if value is None:
        return min(DEFAULT_TIMEOUT_S, cap_s)
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise SyncError("invalid", f"timeout must be a positive number of seconds, got {value!r}")
    return min(seconds, cap_s)


def run(ctx, model: str, version: int | None, inputs: list[bytes], deadline_s: float
        ) -> tuple[str, list]:
    """The version that ran, and the model's raw output for each input, in order."""
    catalog = ctx.catalog
    if not catalog.exists(model):
        raise SyncError("not_found", f"model {model!r} not found")
    if version is not None and not catalog.version_exists(model, version):
        raise SyncError("not_found", f"model {model!r} has no served version {version}")
    if not inputs:
        raise SyncError("invalid", "the request holds no input")
    if len(inputs) > ctx.settings.max_inputs_per_job:
        raise SyncError("invalid", f"{len(inputs)} inputs in one request; the limit is "
                        f"{ctx.settings.max_inputs_per_job}")
    try:
        record, _ = ctx.store.enqueue(model, inputs, version="" if version is None else str(version),
                                      fallback_version=catalog.fallback_version(model),
                                      fields={"output": "raw", **auth.owner_fields()})
    except BacklogFull:
        raise SyncError("unavailable", f"model {model!r} is overloaded; try again shortly") from None
    except NoVersion:
        raise SyncError("unavailable", f"no version of model {model!r} is served yet") from None
    final = ctx.store.wait(record["id"], deadline_s)
    if final is None or final["status"] not in FINAL:
        ctx.store.cancel(record["id"])
        raise SyncError("deadline", f"deadline of {deadline_s:g} s exceeded; the request was "
                        "canceled")
    if final["status"] != "succeeded":
        raise SyncError("internal", final.get("error") or f"the job ended {final['status']}")
    return final["version"], [json.loads(final[f"out:{i}"])["output"]
                              for i in range(len(inputs))]
