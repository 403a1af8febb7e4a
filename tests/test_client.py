"""The Python client (client/, `import inferq`) against a real stack: Redis, the API with a
key, a worker serving `shapes`, and the batch feeder."""
import asyncio
import io
import json
import tarfile

import httpx
import pytest
from PIL import Image

from inferq import (AsyncClient, Client, InvalidInput, JobFailed, NotFound, ServerUnavailable,
                    Unauthorized)
from stack.processes import ROOT, free_port
from tests.client_tools import KEY, STACK, jobs_made, label_of, shape_dir
from tests.test_hostile_images import broken_huffman_table_jpeg

EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def stack(module_stack_factory):
    return module_stack_factory(**STACK)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return shape_dir(tmp_path_factory.mktemp("client") / "shapes", 200, seed=20261219)


@pytest.fixture
def client(stack):
    with Client(stack.base, KEY) as c:
        yield c


def top1(outputs) -> str:
    return outputs[0]["label"]


def test_predict_takes_a_path_bytes_a_file_or_a_pil_image(client):
    path = EXAMPLES / "circle.png"
    assert top1(client.predict("shapes", path)) == "circle"
    assert top1(client.predict("shapes", str(path))) == "circle"
    assert top1(client.predict("shapes", (EXAMPLES / "square.png").read_bytes())) == "square"
    with open(EXAMPLES / "triangle.jpg", "rb") as f:
        assert top1(client.predict("shapes", f)) == "triangle"
    with Image.open(EXAMPLES / "square.png") as im:
        assert top1(client.predict("shapes", im)) == "square"
    assert top1(client.predict("shapes", path, version=1)) == "circle"


def test_url_and_key_come_from_the_environment(stack, monkeypatch):
    monkeypatch.setenv("INFERQ_URL", stack.base)
    monkeypatch.setenv("INFERQ_API_KEY", KEY)
    with Client() as c:
        assert "shapes" in {m["name"] for m in c.models()}
        assert c.model("shapes")["kind"] == "image"


def test_a_job_of_several_images(client):
    job = client.submit("shapes", [EXAMPLES / "circle.png", EXAMPLES / "triangle.png"])
    assert job.status in ("queued", "running", "succeeded")
    assert job.wait(30) is job and job.status == "succeeded"
    assert [top1(o["top_k"]) for o in job.outputs] == ["circle", "triangle"]
    assert job.refresh().finished
    # A cancel that comes after the end answers with the job as it ended.
    assert job.cancel().status == "succeeded"
    assert client.get_job(job.id).outputs == job.outputs


def test_errors_are_typed(stack, client):
    with pytest.raises(NotFound) as missing:
        client.predict("no-such-model", EXAMPLES / "circle.png")
    assert (missing.value.status, missing.value.code) == (404, "unknown_model")
    with pytest.raises(InvalidInput) as bad:
        client.predict("shapes", b"these are not pixels")
    assert (bad.value.status, bad.value.code) == (415, "unsupported_format")
    with pytest.raises(NotFound):
        client.get_job("AAAAAAAAAAAAAAAAAAAAAA")
    with Client(stack.base, "iq_not_a_key_000000") as stranger:
        with pytest.raises(Unauthorized) as refused:
            stranger.models()
    assert refused.value.code == "invalid_key"
    with Client(stack.base, api_key="") as keyless:
        with pytest.raises(Unauthorized, match="no API key: set INFERQ_API_KEY"):
            keyless.models()
    with Client(f"http://127.0.0.1:{free_port()}", KEY, retry_deadline_s=1) as nowhere:
        with pytest.raises(ServerUnavailable) as gone:
            nowhere.models()
    assert gone.value.code == "unreachable"


def test_an_input_the_worker_cannot_read_is_job_failed(client):
    # The API accepts it (its structure is whole); the worker's decode fails it.
    with pytest.raises(JobFailed, match="cannot decode image") as failed:
        client.predict("shapes", broken_huffman_table_jpeg())
    assert failed.value.code == "input_failed"
    job = client.submit("shapes", [broken_huffman_table_jpeg(), EXAMPLES / "circle.png"])
    assert job.wait(30).status == "failed"
    assert top1(job.result(1)) == "circle"
    with pytest.raises(JobFailed):
        job.result(0)


class Recording(httpx.HTTPTransport):
    """The real transport, keeping each request it sends."""

    def __init__(self):
        super().__init__()
        self.sent = []

    def handle_request(self, request):
        self.sent.append(request)
        return super().handle_request(request)


def test_every_post_that_makes_a_job_carries_its_own_idempotency_key(stack):
    recording = Recording()
    with Client(stack.base, KEY, transport=recording) as c:
        c.predict("shapes", EXAMPLES / "circle.png")
        c.submit("shapes", [EXAMPLES / "square.png"] * 2).wait(30).cancel()
    posts = [r for r in recording.sent if r.method == "POST"]
    keys = [r.headers.get("Idempotency-Key") for r in posts]
    assert len(posts) == 3 and all(keys) and len(set(keys)) == 3


def test_async_client_runs_200_images_at_once_from_one_loop(stack, shapes):
    paths = sorted(shapes.iterdir())
    before = jobs_made(stack)

    async def run_all():
        async with AsyncClient(stack.base, KEY) as c:
            return await asyncio.gather(*(c.predict("shapes", p) for p in paths))

    results = asyncio.run(run_all())
    assert len(results) == 200 and all(results)
    correct = sum(top1(out) == label_of(p.name) for p, out in zip(paths, results))
    assert correct / 200 >= 0.95, correct
    assert jobs_made(stack) - before == 200


def test_async_jobs_and_models(stack):
    async def go():
        async with AsyncClient(stack.base, KEY) as c:
            models = await c.models()
            job = await c.submit("shapes", EXAMPLES / "triangle.png", wait=10)
            await job.wait(30)
            again = await c.get_job(job.id)
            return models, job, again

    models, job, again = asyncio.run(go())
    assert "shapes" in {m["name"] for m in models}
    assert job.status == "succeeded" and top1(job.result()) == "triangle"
    assert again.outputs == job.outputs


def test_a_batch_of_a_directory_streamed_as_a_tar(client, shapes, tmp_path):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    names = []
    for i, image in enumerate(sorted(shapes.iterdir())[:30]):
        name = f"nested/{image.name}" if i % 3 == 0 else image.name
        (folder / name).write_bytes(image.read_bytes())
        names.append(name)
    (folder / "readme.txt").write_text("not a picture")
    (folder / ".hidden.png").write_bytes(b"skipped: hidden")

    batch = client.batches.create("shapes", folder, metadata={"run": "test"})
    assert batch["metadata"] == {"run": "test"} and batch["input_format"] == "tar"
    final = client.batches.wait(batch["id"], timeout=120)
    assert final["status"] == "completed"
    assert final["request_counts"] == {"total": 31, "completed": 30, "failed": 1}
    results, errors = list(client.batches.results(batch["id"])), list(client.batches.errors(
        batch["id"]))
    assert sorted(r["custom_id"] for r in results) == sorted(names)
    assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [
        ("readme.txt", "unsupported_format")]
    assert batch["id"] in {b["id"] for b in client.batches.list()}
    assert client.batches.cancel(batch["id"])["status"] == "completed"  # it had ended
    written = client.batches.download(batch["id"], tmp_path / "out")
    assert [len(p.read_text().splitlines()) for p in written] == [30, 1]


def test_a_tar_or_jsonl_file_is_streamed_as_it_is(stack, client, shapes, tmp_path):
    images = sorted(shapes.iterdir())[:10]
    tar = tmp_path / "photos.tar"
    with tarfile.open(tar, "w") as t:
        for p in images:
            t.add(p, arcname=p.name)
    jsonl = tmp_path / "inputs.jsonl"
    jsonl.write_text("".join(json.dumps({"custom_id": p.name, "b64": __import__(
        "base64").b64encode(p.read_bytes()).decode()}) + "\n" for p in images))
    for path, kind in ((tar, "tar"), (jsonl, "jsonl")):
        batch = client.batches.create("shapes", path)
        assert batch["input_format"] == kind
        assert client.batches.wait(batch["id"], timeout=120)["request_counts"]["completed"] == 10

    async def go():
        async with AsyncClient(stack.base, KEY) as c:
            batch = await c.batches.create("shapes", tar)
            await c.batches.wait(batch["id"], timeout=120)
            return [line async for line in c.batches.results(batch["id"])]

    assert sorted(r["custom_id"] for r in asyncio.run(go())) == sorted(p.name for p in images)


def test_an_image_made_in_memory(client):
    out = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(out, format="PNG")
    assert len(client.predict("shapes", out.getvalue())) >= 1
