"""The hostile image corpus (tests/hostile_images.py) at three levels: the API answers each case
exactly as the corpus says and queues nothing when it refuses; a real worker serves every
accepted case and keeps running; and the decoder, on random or mutated bytes, only ever raises
DecodeError."""
import base64
import functools
import io
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from api.app import create_app
from jobs import keys
from jobs.registry import live_workers
from tests.hostile_images import (ACCEPTED_CASES, CASES, QUADRANTS, UPRIGHT_SIZE, save,
                                  stored_for_orientation, with_orientation)
from stack.processes import ROOT, model_processes, queued_inputs
from tests.test_api import make_repo
from worker.preprocess import DecodeError, decode_image

CASE_IDS = [c.name for c in CASES]


@pytest.fixture(scope="module")
def corpus() -> dict[str, bytes]:
    return {c.name: c.build() for c in CASES}


@pytest.fixture(scope="module")
def app_client(redis_server, tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("repo"))
    return create_app({"redis_url": redis_server.url, "model_repository": str(repo)}).test_client()


def post(client, transport: str, data: bytes):
    url = "/v1/models/shapes/jobs"
    if transport == "multipart":
        return client.post(url, data={"image": (io.BytesIO(data), "upload.png")},
                           content_type="multipart/form-data")
    if transport == "json":
        return client.post(url, json={"images": [{"b64": base64.b64encode(data).decode()}]})
    # A raw body: the declared subtype does not matter, the API looks at the bytes.
    return client.post(url, data=data, content_type="image/png")


@pytest.mark.parametrize("transport", ["multipart", "json", "raw"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_the_api_answers_each_case_as_the_corpus_says(app_client, r, corpus, case, transport):
    data = corpus[case.name]
    resp = post(app_client, transport, data)
    assert resp.status_code == case.status, resp.get_data(as_text=True)[:300]
    stream = keys.stream("shapes", 1)
    if case.accepted:
        assert queued_inputs(r, stream) == [data]
    else:
        error = resp.get_json()["error"]
        assert error["code"] == case.code and error["message"]
        assert r.keys(keys.job("*")) == [] and r.xlen(stream) == 0


def test_the_corpus_is_large_and_varied():
    assert len(CASES) >= 30 and len(set(CASE_IDS)) == len(CASES)
    assert len(ACCEPTED_CASES) >= 15 and len(CASES) - len(ACCEPTED_CASES) >= 15


# --- EXIF orientation ------------------------------------------------------------------------

def quadrant_colours(arr: np.ndarray) -> list:
    h, w = arr.shape[:2]
    return [arr[y, x].astype(int) for y in (h // 4, 3 * h // 4) for x in (w // 4, 3 * w // 4)]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright(orientation, fmt):
    arr = decode_image(with_orientation(orientation, fmt), UPRIGHT_SIZE)
    assert arr.shape == (UPRIGHT_SIZE[1], UPRIGHT_SIZE[0], 3)
    for got, want in zip(quadrant_colours(arr), QUADRANTS):
        assert np.abs(got - want).max() < 40, (got, want)


def test_a_turned_jpeg_is_decoded_at_enough_resolution_for_the_model():
    """A portrait photo stored landscape (orientation 6), for a wide, short model input: the
    reduced-size JPEG decode must cover the model's width once the picture is turned, or fine
    detail is lost to upscaling."""
    upright = np.zeros((1600, 200, 3), np.uint8)
    upright[:, (np.arange(200) // 2) % 2 == 0] = 255  # vertical stripes, 2 pixels wide
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = Image.fromarray(np.ascontiguousarray(stored_for_orientation(upright, 6)))
    data = save(stored, "JPEG", exif=exif, quality=95)
    arr = decode_image(data, (100, 10), "grayscale")[..., 0].astype(int)
    assert arr.shape == (10, 100)
    # Each output pixel spans two input columns: the stripes still alternate light and dark.
    row = arr[5]
    assert row[::2].mean() - row[1::2].mean() > 100 or row[1::2].mean() - row[::2].mean() > 100


# --- the decoder on random and mutated bytes -------------------------------------------------

SEEDS = ["1x1 PNG", "progressive JPEG", "CMYK JPEG", "JPEG with EXIF orientation 6",
         "JPEG with a corrupt EXIF block", "multi-picture JPEG (MPO)", "interlaced PNG (Adam7)",
         "16-bit grayscale PNG", "palette PNG with an alpha table", "animated PNG",
         "animated GIF (first frame served)", "WebP lossy", "WebP lossless with alpha",
         "BMP 32-bit with alpha", "BMP run-length encoded (RLE8)"]


@functools.cache
def seed_bytes(name: str) -> bytes:
    return next(c for c in CASES if c.name == name).build()


@st.composite
def mutated(draw):
    """A valid small image with some bytes flipped, cut, or repeated."""
    data = bytearray(seed_bytes(draw(st.sampled_from(SEEDS))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["set", "cut", "repeat", "insert"]))
        if kind == "set":
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == "repeat":
            data[at:at] = data[at:at + draw(st.integers(1, 16))] * draw(st.integers(1, 8))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        if not data:
            break
    return bytes(data)


def decodes_or_refuses(data: bytes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            arr = decode_image(data, (16, 12))
        except DecodeError:
            return
    assert arr.shape == (12, 16, 3) and arr.dtype == np.uint8


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_decoding_random_bytes_only_raises_decode_error(data):
    decodes_or_refuses(data)


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_decoding_mutated_images_only_raises_decode_error(data):
    decodes_or_refuses(data)


# --- a real worker serves every accepted case ------------------------------------------------

def run_job(base: str, name: str, data: bytes) -> dict:
    resp = requests.post(f"{base}/v1/models/shapes/jobs", files=[("image", (name, data))],
                         timeout=30)
    assert resp.status_code == 202, (name, resp.text)
    job = requests.get(resp.json()["urls"]["get"], params={"wait": 30}, timeout=40).json()
    return job


def test_a_real_worker_serves_every_accepted_case_and_keeps_running(stack, corpus):
    worker = stack.worker
    before = model_processes(worker.pid)
    assert before
    with ThreadPoolExecutor(4) as pool:
        jobs = dict(zip((c.name for c in ACCEPTED_CASES), pool.map(
            lambda c: run_job(stack.base, c.name, corpus[c.name]), ACCEPTED_CASES)))
    failed = {name: job.get("error") for name, job in jobs.items() if job["status"] != "succeeded"}
    assert failed == {}
    for job in jobs.values():
        top_k = job["outputs"][0]["top_k"]
        assert sorted(t["label"] for t in top_k) == ["circle", "square", "triangle"]
        assert abs(sum(t["score"] for t in top_k) - 1) < 1e-3
    # The same worker and the same model process served them all, and still serve.
    assert worker.alive() and model_processes(worker.pid) == before
    pids = [w["pid"] for w in live_workers(stack.client, 10)]
    assert pids == [worker.pid]
    job = run_job(stack.base, "circle.png", (ROOT / "examples" / "circle.png").read_bytes())
    assert job["status"] == "succeeded"
    assert job["outputs"][0]["top_k"][0]["label"] == "circle"


def broken_huffman_table_jpeg() -> bytes:
    """A whole JPEG (every segment, the end marker) whose Huffman table counts more codes than a
    table can hold: only decoding it finds that."""
    data = bytearray(save(Image.new("RGB", (32, 32), (200, 40, 40)), "JPEG"))
    at = data.index(b"\xff\xc4")
    data[at + 5:at + 7] = b"\xff\xff"
    return bytes(data)


def test_a_jpeg_broken_inside_a_whole_structure_fails_its_job_not_the_worker(stack):
    """The API checks a JPEG's structure, not its pixels (that costs a decode on every submit):
    damage only a decode finds is accepted, and the job fails with the decoder's error."""
    worker = stack.worker
    before = model_processes(worker.pid)
    job = run_job(stack.base, "broken.jpg", broken_huffman_table_jpeg())
    assert job["status"] == "failed"
    assert job["outputs"][0]["status"] == "failed"
    assert "cannot decode image" in job["outputs"][0]["error"]
    assert worker.alive() and model_processes(worker.pid) == before
    job = run_job(stack.base, "circle.png", (ROOT / "examples" / "circle.png").read_bytes())
    assert job["status"] == "succeeded"
