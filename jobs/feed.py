"""The feeder's side of the bulk lane in Redis: hand a window of a batch's inputs on to the
model's bulk stream (with the cursor that follows them, in one transaction), read the result
lines the workers wrote, and commit them once they are in the batch's files."""
import json
import time

from jobs import keys, scripts

SIZES = ("results_bytes", "errors_bytes")


class Feed:
    def __init__(self, redis, input_ttl_s: int):
        self.redis, self.input_ttl_s = redis, int(input_ttl_s)
        self._lease = scripts.register(redis, "lease")

    def lease(self, batch_id: str, owner: str, ttl_s: float) -> bool:
        """Take or renew this feeder's lease on a batch; False while another feeder holds it."""
        return bool(self._lease(keys=[keys.batch_lease(batch_id)],
                                args=[owner, int(ttl_s * 1000)]))

    def hand_on(self, batch: dict, queued: list[tuple[int, str, bytes]], failed: list[str],
                cursor, fed: int):
        """Queue `queued` (index, custom_id, bytes) on the batch's bulk stream, add `failed`
        result lines (inputs the feeder itself refused), and save the cursor after them: all
        or nothing, so a feeder that dies re-reads from the last cursor it saved."""
        batch_id, now = batch["id"], repr(time.time())
        stream = keys.bulk_stream(batch["model"], batch["version"])
        pipe = self.redis.pipeline(transaction=True)
        for index, custom_id, data in queued:
            pipe.set(keys.batch_input(batch_id, index), data, ex=self.input_ttl_s)
            pipe.xadd(stream, {"batch": batch_id, "idx": index, "cid": custom_id, "t": now})
        if failed:
            pipe.rpush(keys.batch_results(batch_id), *failed)
        pipe.hset(keys.batch(batch_id), mapping={"cursor": json.dumps(list(cursor)), "fed": fed})
        pipe.execute()

    def results(self, batch_id: str, count: int) -> list[bytes]:
        """The oldest `count` result lines not yet committed."""
        return self.redis.lrange(keys.batch_results(batch_id), 0, count - 1)

    def done(self, batch_id: str, indexes: list[int]) -> list[bool]:
        """Whether each input's line is already in the files."""
        if not indexes:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for index in indexes:
            pipe.getbit(keys.batch_done(batch_id), index)
        return [bool(bit) for bit in pipe.execute()]

    def committed_sizes(self, batch_id: str) -> dict[str, int]:
        """The sizes of the results and errors files at the last commit; read afresh, since
        the record a step began with may predate another feeder's last commit."""
        sizes = self.redis.hmget(keys.batch(batch_id), SIZES)
        return {field: int(size or 0) for field, size in zip(SIZES, sizes)}

    def commit(self, batch_id: str, taken: int, completed: list[int], failed: list[int],
               sizes: dict[str, int]):
        """After the lines are in the files: mark their inputs done, count them, record the
        files' sizes, and drop the `taken` lines read. A feeder that dies before this truncates
        the files back to the sizes of the last commit and writes the lines again."""
        pipe = self.redis.pipeline(transaction=True)
        for index in completed + failed:
            pipe.setbit(keys.batch_done(batch_id), index, 1)
        if completed:
            pipe.hincrby(keys.batch(batch_id), "completed", len(completed))
        if failed:
            pipe.hincrby(keys.batch(batch_id), "failed", len(failed))
        pipe.hset(keys.batch(batch_id), mapping=sizes)
        pipe.ltrim(keys.batch_results(batch_id), taken, -1)
        pipe.execute()

    def forget(self, batch_id: str):
        """A batch that ended: what Redis still holds of its inputs' progress."""
        self.redis.delete(keys.batch_results(batch_id), keys.batch_done(batch_id),
                          keys.batch_lease(batch_id))
