"""A job as the client sees it: the API's job JSON (`data`), and the calls that move it."""
from . import _calls


class _Job:
    def __init__(self, client, data: dict):
        self._client, self.data = client, data

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def status(self) -> str:
        """queued, running, succeeded, failed or canceled (as of the last answer)."""
        return self.data["status"]

    @property
    def finished(self) -> bool:
        return self.data["status"] in _calls.JOB_FINAL

    @property
    def outputs(self) -> list[dict]:
        """One per input, in order: `index`, `status`, and `top_k` (models with labels) or
        `output`, or `error` (`code`, `message`)."""
        return self.data["outputs"]

    def result(self, index: int = 0):
        """Input `index`'s top-k list (or raw output); JobFailed if it failed."""
        return _calls.result(self.data, index)

    def __repr__(self):
        return f"<{type(self).__name__} {self.id} {self.status}>"


class Job(_Job):
    def refresh(self) -> "Job":
        self.data = self._client._run(_calls.get_job(self.id))
        return self

    def wait(self, timeout: float | None = None) -> "Job":
        """Long-poll until the job ends (WaitTimeout after `timeout` seconds; None: no
        limit)."""
        self.data = self._client._run(_calls.wait_job(self.data, timeout))
        return self

    def cancel(self) -> "Job":
        self.data = self._client._run(_calls.cancel_job(self.id))
        return self


class AsyncJob(_Job):
    async def refresh(self) -> "AsyncJob":
        self.data = await self._client._run(_calls.get_job(self.id))
        return self

    async def wait(self, timeout: float | None = None) -> "AsyncJob":
        self.data = await self._client._run(_calls.wait_job(self.data, timeout))
        return self

    async def cancel(self) -> "AsyncJob":
        self.data = await self._client._run(_calls.cancel_job(self.id))
        return self
