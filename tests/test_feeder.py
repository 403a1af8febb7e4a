"""The feeder against a real Redis and a real batch store, with a stand-in for the model workers
that answers bulk entries as the worker's bulk lane does (jobs/lua/finish_bulk.lua): a result
line per entry while its batch runs. Every input's line lands in the files exactly once."""
import io
import json
import os
import tarfile
import time

import pytest
from PIL import Image

from feeder.feeder import Feeder
from jobs import keys
from jobs.batch import (CANCELLED, COMPLETED, EXPIRED, FAILED, IN_PROGRESS, Batches, Files,
                        new_batch_id)
from jobs.settings import load_settings

IMAGE_INPUT = json.dumps({"kind": "image"})


def png(i: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (i % 256, 0, 0)).save(out, "PNG")
    return out.getvalue()


def tar_of(members) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture
def settings(redis_url, tmp_path):
    return load_settings({}, redis_url=redis_url, batch_dir=str(tmp_path / "batches"),
                         batch_window=16)


@pytest.fixture
def feeder(r, settings):
    return Feeder(r, settings)


def create(r, settings, data: bytes, fmt: str, tenant="t", **fields) -> str:
    batch_id = new_batch_id()
    files = Files(settings.batch_dir, batch_id)
    os.makedirs(files.dir)
    with open(files.input, "wb") as f:
        f.write(data)
    Batches(r, 3600, 3600).create(batch_id, tenant, 10, {
        "model": "m", "version": "1", "format": fmt, "input": IMAGE_INPUT,
        "input_bytes": len(data), **fields})
    return batch_id


class Workers:
    """Answers what the bulk stream holds, as the model workers' bulk lane does."""

    def __init__(self, r, fail_ids=()):
        self.r, self.fail_ids, self.most_in_flight = r, set(fail_ids), 0

    def run(self, limit: int | None = None):
        stream = keys.bulk_stream("m", 1)
        entries = self.r.xrange(stream, count=limit)
        self.most_in_flight = max(self.most_in_flight, self.r.xlen(stream))
        for entry_id, f in entries:
            batch_id, idx, cid = f[b"batch"].decode(), int(f[b"idx"]), f[b"cid"].decode()
            status = self.r.hget(keys.batch(batch_id), "status")
            data = self.r.get(keys.batch_input(batch_id, idx))
            if status in (b"in_progress", b"cancelling"):
                line = ({"custom_id": cid, "index": idx, "error": {
                    "code": "model_error", "message": "raised"}} if cid in self.fail_ids else
                    {"custom_id": cid, "index": idx, "outputs": [{"label": "x", "score": 1.0}],
                     "model_version": 1, "bytes": len(data)})
                self.r.rpush(keys.batch_results(batch_id), json.dumps(line))
            self.r.delete(keys.batch_input(batch_id, idx))
            self.r.xdel(stream, entry_id)


def run_until(feeder, workers, r, batch_id, statuses, steps=500, worker_limit=None):
    for _ in range(steps):
        feeder.step()
        workers.run(worker_limit)
        status = r.hget(keys.batch(batch_id), "status").decode()
        if status in statuses:
            return status
    raise AssertionError(f"batch stayed {status}")


def lines(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_a_tar_runs_to_completed_with_each_input_once_in_its_file(r, settings, feeder):
    members = [(f"img/{i}.png", png(i)) for i in range(50)]
    members.insert(10, ("notes.txt", b"not an image"))
    members.insert(20, ("cut.png", png(1)[:30]))
    batch_id = create(r, settings, tar_of(members), "tar")
    workers = Workers(r, fail_ids={"img/7.png"})
    assert run_until(feeder, workers, r, batch_id, [COMPLETED]) == COMPLETED
    files = Files(settings.batch_dir, batch_id)
    ok, bad = lines(files.results), lines(files.errors)
    assert sorted(x["custom_id"] for x in ok) == sorted(f"img/{i}.png" for i in range(50)
                                                        if i != 7)
    assert {x["custom_id"]: x["error"]["code"] for x in bad} == {
        "notes.txt": "unsupported_format", "cut.png": "invalid_image", "img/7.png": "model_error"}
    assert all(x["bytes"] > 0 and x["model_version"] == 1 for x in ok)
    record = Batches(r, 1, 1).get(batch_id)
    assert (record["total"], record["completed"], record["failed"]) == ("52", "49", "3")
    assert workers.most_in_flight <= settings.batch_window
    # Done: nothing of its progress is left in Redis, and its record expires.
    assert not r.exists(keys.batch_results(batch_id), keys.batch_done(batch_id))
    assert 0 < r.ttl(keys.batch(batch_id)) <= settings.batch_ttl_s


def test_jsonl_bad_lines_are_named_in_the_errors_file(r, settings, feeder):
    import base64
    good = [{"custom_id": f"c{i}", "b64": base64.b64encode(png(i)).decode()} for i in range(5)]
    text = "\n".join([json.dumps(good[0]), "{not json", json.dumps({"b64": "AAAA"}),
                      json.dumps({"custom_id": "bad64", "b64": "@@@"}),
                      *(json.dumps(g) for g in good[1:])]) + "\n"
    batch_id = create(r, settings, text.encode(), "jsonl")
    run_until(feeder, Workers(r), r, batch_id, [COMPLETED])
    files = Files(settings.batch_dir, batch_id)
    assert sorted(x["custom_id"] for x in lines(files.results)) == [f"c{i}" for i in range(5)]
    assert sorted((x["custom_id"], x["error"]["code"]) for x in lines(files.errors)) == [
        ("bad64", "invalid_base64"), ("line-2", "invalid_json"), ("line-3", "invalid_custom_id")]


def test_a_file_that_cannot_be_run_fails_with_its_lines_and_both_files(r, settings, feeder):
    text = "".join(json.dumps({"custom_id": c, "b64": "AA=="}) + "\n" for c in "abcab")
    batch_id = create(r, settings, text.encode(), "jsonl")
    assert run_until(feeder, Workers(r), r, batch_id, [FAILED, COMPLETED]) == FAILED
    record = Batches(r, 1, 1).get(batch_id)
    assert [(e["code"], e["line"]) for e in json.loads(record["errors"])] == [
        ("duplicate_custom_id", 4), ("duplicate_custom_id", 5)]
    files = Files(settings.batch_dir, batch_id)
    assert lines(files.results) == [] and lines(files.errors) == []
    assert not r.exists(keys.bulk_stream("m", 1))  # nothing was fed


def test_a_new_feeder_resumes_and_writes_nothing_twice(r, settings, feeder):
    batch_id = create(r, settings, tar_of([(f"{i}.png", png(i)) for i in range(60)]), "tar")
    workers = Workers(r)
    for _ in range(3):
        feeder.step()
        workers.run(limit=10)
    record = Batches(r, 1, 1).get(batch_id)
    assert record["status"] == IN_PROGRESS and 0 < int(record["completed"]) < 60
    # It dies after writing lines it never committed, and its lease runs out.
    files = Files(settings.batch_dir, batch_id)
    with open(files.results, "a") as f:
        f.write(json.dumps({"custom_id": "0.png", "index": 0, "outputs": []}) + "\n")
    r.delete(keys.batch_lease(batch_id))
    # The inputs in flight are answered again too (a worker's entries reclaimed twice).
    for raw in r.lrange(keys.batch_results(batch_id), 0, -1):
        r.rpush(keys.batch_results(batch_id), raw)
    run_until(Feeder(r, settings), workers, r, batch_id, [COMPLETED])
    ids = [x["custom_id"] for x in lines(files.results)]
    assert sorted(ids) == sorted(f"{i}.png" for i in range(60))


def test_redis_that_lost_the_last_commit_gets_no_line_twice(r, settings, feeder):
    """Redis restarted from an append-only file a second old: the feeder's last commit is gone
    (done bits, counts, file sizes), the lines it wrote are not. The same feeder goes on."""
    batch_id = create(r, settings, tar_of([(f"{i}.png", png(i)) for i in range(60)]), "tar")
    workers = Workers(r)
    for _ in range(2):
        feeder.step()
        workers.run(limit=10)
    before = {k: (r.dump(k), r.pttl(k)) for k in r.keys("*")}
    feeder.step()  # appends this step's lines and commits them
    files = Files(settings.batch_dir, batch_id)
    assert lines(files.results)
    r.flushdb()
    for k, (dumped, pttl) in before.items():
        r.restore(k, max(pttl, 0), dumped)
    run_until(feeder, workers, r, batch_id, [COMPLETED])
    ids = [x["custom_id"] for x in lines(files.results)]
    assert sorted(ids) == sorted(f"{i}.png" for i in range(60))


def test_cancel_stops_feeding_and_keeps_what_finished(r, settings, feeder):
    batch_id = create(r, settings, tar_of([(f"{i}.png", png(i)) for i in range(200)]), "tar")
    workers = Workers(r)
    for _ in range(3):
        feeder.step()
        workers.run(limit=8)
    assert Batches(r, 1, 1).cancel(batch_id) == "cancelling"
    assert run_until(feeder, workers, r, batch_id, [CANCELLED]) == CANCELLED
    workers.run()
    files = Files(settings.batch_dir, batch_id)
    done = lines(files.results)
    record = Batches(r, 1, 1).get(batch_id)
    assert 0 < len(done) == int(record["completed"]) < 200
    assert len({x["index"] for x in done}) == len(done)
    assert r.xlen(keys.bulk_stream("m", 1)) == 0 and not r.keys(keys.batch_input(batch_id, "*"))


def test_a_batch_past_its_expiry_ends_expired(r, settings, feeder):
    batch_id = create(r, settings, tar_of([(f"{i}.png", png(i)) for i in range(40)]), "tar",
                      expires_at=repr(time.time() + 3600))
    workers = Workers(r)
    feeder.step()
    workers.run(limit=4)
    r.hset(keys.batch(batch_id), "expires_at", repr(time.time() - 1))
    assert run_until(feeder, workers, r, batch_id, [EXPIRED]) == EXPIRED


def test_two_batches_on_one_lane_share_the_window(r, settings, feeder):
    first = create(r, settings, tar_of([(f"a{i}.png", png(i)) for i in range(100)]), "tar")
    second = create(r, settings, tar_of([(f"b{i}.png", png(i)) for i in range(100)]), "tar")
    for _ in range(3):
        feeder.step()
    queued = [f[b"batch"].decode() for _, f in r.xrange(keys.bulk_stream("m", 1))]
    assert queued.count(first) == queued.count(second) == settings.batch_window // 2


def test_files_of_a_batch_that_is_gone_are_swept(r, settings, feeder):
    batch_id = create(r, settings, tar_of([("a.png", png(1))]), "tar")
    r.delete(keys.batch(batch_id))
    files = Files(settings.batch_dir, batch_id)
    old = time.time() - 3600
    os.utime(files.dir, (old, old))
    feeder.sweep()
    assert not os.path.exists(files.dir)


def test_the_end_of_a_batch_schedules_its_webhook_with_the_batch_as_it_ended(r, settings,
                                                                             feeder):
    from jobs.batch import webhook_body
    from jobs.deliveries import Deliveries
    from jobs.record import flat_record
    batch_id = create(r, settings, tar_of([(f"{i}.png", png(i)) for i in range(5)]), "tar",
                      webhook="https://hooks.example/x",
                      webhook_events="batch.completed,batch.failed")
    run_until(feeder, Workers(r), r, batch_id, [COMPLETED])
    (delivery,) = Deliveries(r, 3600).for_job(batch_id)
    assert (delivery["event"], delivery["status"]) == ("batch.completed", "pending")
    raw = r.hget(keys.delivery(delivery["id"]), "record")
    body = webhook_body("batch.completed", time.time(), flat_record(raw), "http://api")
    assert body["type"] == "batch.completed"
    assert body["data"]["status"] == "completed"
    assert body["data"]["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
    assert body["data"]["urls"]["results"] == f"http://api/v1/batches/{batch_id}/results"
