"""What the batch tests share: input files made of freshly drawn shapes, and a client's view of
a batch (submit, wait, read its files)."""
import base64
import io
import json
import tarfile
import time

import requests

from demo.shapes import random_examples

JPEG = b"\xff\xd8"


def shape_tar(n: int, seed: int, extra=()) -> tuple[bytes, dict[str, str]]:
    """A tar of `n` shape images (PNG and JPEG) named `shapes/<i>_<label>.<ext>`, plus `extra`
    (name, bytes) members; and each image's label by name."""
    labels, out = {}, io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for i, (label, data) in enumerate(random_examples(n, seed=seed)):
            ext = "jpg" if data.startswith(JPEG) else "png"
            name = f"shapes/{i}_{label}.{ext}"
            labels[name] = label
            _add(tar, name, data)
        for name, data in extra:
            _add(tar, name, data)
    return out.getvalue(), labels


def _add(tar, name: str, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def shape_jsonl(n: int, seed: int, bad=()) -> tuple[bytes, dict[str, str]]:
    """JSONL of `n` base64 shape images (custom_id `c<i>`), then the `bad` lines as they are."""
    labels, lines = {}, []
    for i, (label, data) in enumerate(random_examples(n, seed=seed)):
        labels[f"c{i}"] = label
        lines.append(json.dumps({"custom_id": f"c{i}", "b64": base64.b64encode(data).decode()}))
    return ("\n".join(lines + list(bad)) + "\n").encode(), labels


def submit(base: str, data: bytes, model: str = "shapes", name: str = "input", headers=None,
           **fields) -> requests.Response:
    return requests.post(f"{base}/v1/models/{model}/batches", headers=headers,
                         files={"input": (name, data)}, data=fields, timeout=120)


def wait_final(base: str, batch_id: str, timeout_s: float = 300, headers=None) -> dict:
    """Long-poll the batch until it is final; its last state."""
    deadline = time.monotonic() + timeout_s
    while True:
        batch = requests.get(f"{base}/v1/batches/{batch_id}", params={"wait": 10},
                             headers=headers, timeout=30).json()
        if batch["status"] in ("completed", "failed", "cancelled", "expired"):
            return batch
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch_id} still {batch['status']}: {batch}")


def lines(base: str, batch_id: str, which: str, headers=None) -> list[dict]:
    resp = requests.get(f"{base}/v1/batches/{batch_id}/{which}", headers=headers, timeout=60)
    assert resp.status_code == 200, resp.text
    return [json.loads(line) for line in resp.text.splitlines()]


def each_once(base: str, batch_id: str, expected_ids) -> tuple[list[dict], list[dict]]:
    """The batch's results and errors; asserts every expected custom_id is in exactly one line
    of one of the two files."""
    ok, bad = lines(base, batch_id, "results"), lines(base, batch_id, "errors")
    ids = [x["custom_id"] for x in ok + bad]
    assert len(ids) == len(set(ids)), "a custom_id appears twice"
    assert sorted(ids) == sorted(expected_ids)
    return ok, bad
