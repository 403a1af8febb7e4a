"""A tenant's recent jobs, newest first, a page at a time (GET /v1/jobs). The enqueue script
adds each job to its tenant's sorted set (keys.tenant_jobs) by creation time; a job whose
record has expired is skipped here and pruned from the set.

A page ends at a cursor: the (creation time, id) of its last job, encoded. The next page
starts strictly after it, so a cursor stays good even once its own job has expired."""
import base64
import binascii
import math

from jobs import keys
from jobs.record import is_job_id

FIELDS = ("id", "model", "version", "status", "created_at", "completed_at", "n_inputs", "tenant")


class BadCursor(ValueError):
    """Not a cursor this module made."""


def encode_cursor(score: float, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{score!r} {job_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score_text, job_id = raw.split(" ", 1)
        score = float(score_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor(cursor) from None
    if not math.isfinite(score) or not is_job_id(job_id):
        raise BadCursor(cursor)
    return score, job_id


def page(redis, tenant: str, limit: int, after: str | None = None
         ) -> tuple[list[dict], str | None]:
    """Up to `limit` of the tenant's jobs (records of FIELDS) after cursor `after`, newest
    first, and the cursor of the next page (None: this is the last). Raises BadCursor."""
    key = keys.tenant_jobs(tenant)
    top, after_id = decode_cursor(after) if after else (math.inf, None)
    after_member = after_id.encode() if after_id else None
    found: list[tuple[dict, float]] = []
    gone: list[bytes] = []
    offset, chunk = 0, limit + 1
    while len(found) <= limit:
        rows = redis.zrevrangebyscore(key, "+inf" if after_id is None else top, "-inf",
                                      start=offset, num=chunk,
                                      withscores=True)
        if not rows:
            break
        offset += len(rows)
        # Equal scores come in reverse order of their members: those at or above the cursor's
        # id were on an earlier page.
        rows = [(m, s) for m, s in rows
                if after_member is None or s < top or m < after_member]
        pipe = redis.pipeline(transaction=False)
        for member, _ in rows:
            pipe.hmget(keys.job(member.decode()), FIELDS)
        for (member, score), values in zip(rows, pipe.execute()):
            if values[0] is None:  # expired
                gone.append(member)
                continue
            record = {f: v.decode() for f, v in zip(FIELDS, values) if v is not None}
            if record.get("tenant", "") == tenant:
                found.append((record, score))
        chunk = min(2 * chunk, 1000)  # many expired: read further ahead
    if gone:
        redis.zrem(key, *gone)
    more = len(found) > limit
    found = found[:limit]
    cursor = encode_cursor(found[-1][1], found[-1][0]["id"]) if more else None
    return [record for record, _ in found], cursor
