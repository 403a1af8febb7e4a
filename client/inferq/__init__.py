"""inferq's Python client: `Client` (blocking) and `AsyncClient` (async), the same methods.

    from inferq import Client
    client = Client()  # INFERQ_URL (default http://localhost:8000), INFERQ_API_KEY
    print(client.predict("shapes", "examples/circle.png")[0]["label"])
"""
from ._client import AsyncClient, Client
from ._job import AsyncJob, Job
from .errors import (BacklogFull, Conflict, InferqError, InvalidInput, JobFailed, NotFound,
                     RateLimited, ServerUnavailable, Unauthorized, WaitTimeout)

__version__ = "0.1.0"
__all__ = ["AsyncClient", "AsyncJob", "BacklogFull", "Client", "Conflict", "InferqError",
           "InvalidInput", "Job", "JobFailed", "NotFound", "RateLimited", "ServerUnavailable",
           "Unauthorized", "WaitTimeout"]
