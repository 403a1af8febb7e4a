"""Webhooks end to end: API, inference worker, webhook worker, and a real receiver on loopback."""
import io
import json
import subprocess
import sys
import time
from datetime import datetime

import pytest
import requests
from PIL import Image
from svix.webhooks import Webhook, WebhookVerificationError

from stack.processes import ROOT, stays, wait_for
from tests.receiver import Receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
RETRY_S = 2.0  # the retry schedule here: every attempt 2 s (+-20%) after the last


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), (30, 60, 90)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def stack(module_stack_factory, tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    subprocess.run([sys.executable, "-m", "tests.poison_model", str(repo)], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    settings = {"webhook_secret": f"{SECRET},{OLD_SECRET}",
                "webhook_allow_networks": "127.0.0.1/32",
                "webhook_retry_schedule_s": str(RETRY_S)}
    processes = module_stack_factory(models=["poison"], webhooks=True, repository=repo, aof=True,
                                     **settings)
    receiver = Receiver()
    yield {"base": processes.base, "redis": processes.redis, "processes": processes,
           "receiver": receiver}
    receiver.close()


def submit(stack, path, **form):
    resp = requests.post(f"{stack['base']}/v1/models/poison/jobs",
                         files=[("image", ("a.png", png()))],
                         data={"webhook": stack["receiver"].url(path), **form}, timeout=10)
    assert resp.status_code == 202, resp.text
    return resp.json()


def deliveries(job):
    return requests.get(job["urls"]["get"] + "/deliveries", timeout=10).json()["deliveries"]


def wait_delivery_ends(job, timeout_s=30):
    def ended():
        ds = deliveries(job)
        return ds if ds and all(d["status"] != "pending" for d in ds) else None
    return wait_for(ended, timeout_s, "the webhook delivery to end", 0.2)


def test_delivery_is_signed_and_verified_by_svix(stack):
    job = submit(stack, "/signed")
    [d] = wait_delivery_ends(job)
    assert d["status"] == "delivered" and d["event"] == "completed"
    [req] = stack["receiver"].to("/signed")
    headers = req["headers"]
    assert headers["webhook-id"] == d["id"]
    assert len(headers["webhook-signature"].split(" ")) == 2  # one per active secret
    # Both the current and the rotated-out secret verify it, with svix's own verifier.
    for secret in (SECRET, OLD_SECRET):
        Webhook(secret).verify(req["body"], headers)  # raises unless the signature is valid
    payload = json.loads(req["body"])
    # Standard Webhooks' payload: the event's type, when it happened, and the job, exactly
    # as GET /v1/jobs/{id} answers it once finished.
    assert set(payload) == {"type", "timestamp", "data"}
    assert payload["type"] == "job.completed"
    assert payload["data"] == requests.get(job["urls"]["get"], timeout=10).json()
    assert payload["data"]["id"] == job["id"] and payload["data"]["status"] == "succeeded"
    assert payload["timestamp"] == payload["data"]["completed_at"]
    tampered = req["body"].replace(b"succeeded", b"failed")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(req["body"], headers)


def test_500_500_200_is_one_delivery_after_two_retries_with_one_id(stack):
    stack["receiver"].script("/flaky", 500, 500, 200)
    job = submit(stack, "/flaky")
    [d] = wait_delivery_ends(job, timeout_s=6 * RETRY_S + 10)
    assert d["status"] == "delivered"
    assert [a["status_code"] for a in d["attempts"]] == [500, 500, 200]
    # Nothing more comes after the success, for longer than a retry would take to come.
    stays(lambda: len(stack["receiver"].to("/flaky")) == 3, RETRY_S * 1.5, "three requests")
    got = stack["receiver"].to("/flaky")
    assert len(got) == 3
    assert {r["headers"]["webhook-id"] for r in got} == {d["id"]}
    gaps = [b["at"] - a["at"] for a, b in zip(got, got[1:])]
    assert all(g >= RETRY_S * 0.75 for g in gaps)  # retried on the schedule, not at once


def test_410_stops_further_attempts(stack):
    stack["receiver"].script("/gone", 410)
    job = submit(stack, "/gone")
    [d] = wait_delivery_ends(job)
    assert d["status"] == "stopped" and [a["status_code"] for a in d["attempts"]] == [410]
    # Nothing more comes, for longer than a retry would take to come.
    stays(lambda: len(stack["receiver"].to("/gone")) == 1, RETRY_S * 1.5, "one request")


def test_a_redirect_is_not_followed(stack):
    stack["receiver"].script("/moved", (302, {"Location": stack["receiver"].url("/internal")}))
    job = submit(stack, "/moved")
    [d] = wait_delivery_ends(job)
    assert d["status"] == "failed" and d["attempts"][0]["status_code"] == 302
    assert "redirects are not followed" in d["attempts"][0]["error"]
    assert stack["receiver"].to("/internal") == []


def test_started_and_completed_events(stack):
    job = submit(stack, "/both", webhook_events_filter="started,completed")
    ds = wait_for(lambda: len(deliveries(job)) == 2 and wait_delivery_ends(job), 30,
                  "two deliveries")
    assert sorted(d["event"] for d in ds) == ["completed", "started"]
    got = stack["receiver"].to("/both")
    assert len({r["headers"]["webhook-id"] for r in got}) == 2
    bodies = {b["type"]: b for b in (json.loads(r["body"]) for r in got)}
    assert set(bodies) == {"job.started", "job.completed"}
    started = bodies["job.started"]["data"]
    assert started["status"] == "running" and not started["finished"]
    assert bodies["job.started"]["timestamp"] == started["started_at"]
    assert bodies["job.completed"]["data"]["status"] == "succeeded"


def test_retry_survives_a_webhook_worker_killed_between_attempts(stack):
    stack["receiver"].script("/restart", 503, 200)
    job = submit(stack, "/restart")
    wait_for(lambda: deliveries(job) and deliveries(job)[0]["attempts"], 30, "the first attempt")
    stack["processes"].hooks.kill9()
    due = datetime.fromisoformat(deliveries(job)[0]["next_attempt_at"]).timestamp()
    wait_for(lambda: time.time() > due, RETRY_S * 2, "the retry to fall due while no webhook "
             "worker runs")
    assert len(stack["receiver"].to("/restart")) == 1
    assert deliveries(job)[0]["status"] == "pending"
    stack["processes"].hooks = stack["processes"].start_webhook_worker()
    [d] = wait_delivery_ends(job)
    assert d["status"] == "delivered" and [a["status_code"] for a in d["attempts"]] == [503, 200]
    assert len(stack["receiver"].to("/restart")) == 2


def test_retry_survives_a_redis_restart(stack):
    stack["receiver"].script("/redis", 503, 200)
    job = submit(stack, "/redis")
    wait_for(lambda: deliveries(job) and deliveries(job)[0]["attempts"], 30, "the first attempt")
    stack["redis"].crash_and_restart(down_s=1.0)
    [d] = wait_delivery_ends(job, timeout_s=60)
    assert d["status"] == "delivered" and [a["status_code"] for a in d["attempts"]] == [503, 200]
    assert len(stack["receiver"].to("/redis")) == 2
    assert {r["headers"]["webhook-id"] for r in stack["receiver"].to("/redis")} == {d["id"]}


def test_prefer_wait_returns_the_finished_job(stack):
    resp = requests.post(f"{stack['base']}/v1/models/poison/jobs",
                         files=[("image", ("a.png", png()))], headers={"Prefer": "wait=20"},
                         timeout=30)
    assert resp.status_code == 200
    assert resp.headers["Preference-Applied"] == "wait=20"
    assert resp.json()["status"] == "succeeded"
