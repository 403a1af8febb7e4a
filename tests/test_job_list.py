"""GET /v1/jobs: the caller's tenant's recent jobs, newest first, a page at a time, against a
real stack (Redis and the API under gunicorn; no worker, so the jobs stay queued). Each test
lists the jobs of a tenant of its own, so the module's tests share one stack."""
import base64

import pytest
import requests

from jobs import keys, producer
from jobs.producer import Producer
from stack.processes import wait_for
from tests.test_api import png_bytes

TENANTS = ("fields", "pages", "alpha", "beta", "expiry", "params")
KEYS = {t: f"list-{t}-0123456789abcdef" for t in TENANTS}
ADMIN = "list-admin-0123456789abcdef"


def auth(tenant: str) -> dict:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


@pytest.fixture(scope="module")
def stack(module_stack_factory):
    return module_stack_factory(models=[], api_keys=",".join(f"{k}={t}" for t, k in KEYS.items()),
                                admin_keys=f"{ADMIN}=ops")


def submit(stack, tenant: str, n_inputs: int = 1) -> dict:
    files = [("image", (f"{i}.png", png_bytes(), "image/png")) for i in range(n_inputs)]
    resp = requests.post(f"{stack.base}/v1/models/shapes/jobs", files=files,
                         headers=auth(tenant), timeout=10)
    assert resp.status_code == 202, resp.text
    return resp.json()


def listing(stack, tenant: str, **params) -> requests.Response:
    return requests.get(f"{stack.base}/v1/jobs", params=params, headers=auth(tenant), timeout=5)


def every_page(stack, tenant: str, limit: int) -> list[list[str]]:
    pages, after = [], None
    while True:
        params = {"limit": limit, **({"after": after} if after else {})}
        body = listing(stack, tenant, **params).json()
        pages.append([j["id"] for j in body["jobs"]])
        after = body["next"]
        if after is None:
            return pages


def test_jobs_are_listed_newest_first_with_what_the_console_shows(stack):
    first = submit(stack, "fields", n_inputs=2)
    second = submit(stack, "fields")
    resp = listing(stack, "fields")
    assert resp.status_code == 200
    body = resp.json()
    assert body["next"] is None
    assert [j["id"] for j in body["jobs"]] == [second["id"], first["id"]]
    assert body["jobs"][1] == {
        "id": first["id"], "model": "shapes", "version": first["version"], "status": "queued",
        "created_at": first["created_at"], "finished_at": None, "inputs": 2,
        "url": f"/v1/jobs/{first['id']}"}
    canceled = requests.post(f"{stack.base}/v1/jobs/{first['id']}/cancel",
                             headers=auth("fields"), timeout=5).json()
    [_, listed] = listing(stack, "fields").json()["jobs"]
    assert listed["status"] == "canceled"
    assert listed["finished_at"] == canceled["completed_at"] is not None
    # The url is the job's own GET.
    job = requests.get(stack.base + listed["url"], headers=auth("fields"), timeout=5)
    assert job.status_code == 200 and job.json()["id"] == first["id"]


def test_pages_follow_next_until_it_is_null(stack):
    ids = [submit(stack, "pages")["id"] for _ in range(5)]
    pages = every_page(stack, "pages", limit=2)
    assert pages == [ids[4:2:-1], ids[2:0:-1], ids[:1]]
    assert every_page(stack, "pages", limit=5) == [ids[::-1]]
    assert listing(stack, "pages").json()["jobs"][0]["id"] == ids[-1]  # default limit 20


def test_a_tenant_sees_only_its_own_jobs(stack):
    mine = {submit(stack, "alpha")["id"] for _ in range(3)}
    theirs = {submit(stack, "beta")["id"] for _ in range(2)}
    assert {j["id"] for j in listing(stack, "alpha").json()["jobs"]} == mine
    assert {j["id"] for j in listing(stack, "beta").json()["jobs"]} == theirs
    # Another tenant's cursor names a job of theirs: it pages nothing of theirs into mine.
    cursor = listing(stack, "beta", limit=1).json()["next"]
    assert {j["id"] for j in listing(stack, "alpha", after=cursor).json()["jobs"]} <= mine
    assert requests.get(f"{stack.base}/v1/jobs", timeout=5).status_code == 401


def test_expired_jobs_are_skipped_and_pruned(stack):
    ids = [submit(stack, "expiry")["id"] for _ in range(4)]
    members = keys.tenant_jobs("expiry")
    # Redis expiring a job's record is the record being gone.
    stack.client.delete(keys.job(ids[1]), keys.job(ids[3]))
    body = listing(stack, "expiry", limit=1).json()
    assert [j["id"] for j in body["jobs"]] == [ids[2]]
    assert stack.client.zscore(members, ids[3]) is None
    # The cursor's own job expiring does not lose the page after it.
    stack.client.delete(keys.job(ids[2]))
    assert [j["id"] for j in listing(stack, "expiry", after=body["next"]).json()["jobs"]] == [
        ids[0]]
    assert [j["id"] for j in listing(stack, "expiry").json()["jobs"]] == [ids[0]]
    assert stack.client.zrange(members, 0, -1) == [ids[0].encode()]


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("params,code", [
    ({"limit": 0}, "invalid_limit"), ({"limit": 101}, "invalid_limit"),
    ({"limit": "ten"}, "invalid_limit"), ({"limit": "2.5"}, "invalid_limit"),
    ({"after": "not a cursor"}, "invalid_after"), ({"after": "%%%"}, "invalid_after"),
    ({"after": cursor_of("nan AAAAAAAAAAAAAAAAAAAA")}, "invalid_after"),
    ({"after": cursor_of("12.5 no/such/id")}, "invalid_after"),
    ({"after": cursor_of("12.5")}, "invalid_after"),
    ({"after": "x" * 300}, "invalid_after"),
])
def test_bad_parameters_are_400(stack, params, code):
    resp = listing(stack, "params", **params)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == code


def test_an_empty_list(stack):
    assert listing(stack, "params").json() == {"jobs": [], "next": None}


def test_the_list_is_trimmed_to_the_ttl_and_the_cap(redis_url, r, monkeypatch):
    """On each enqueue: members older than the job TTL go, then all but the newest cap."""
    store = Producer(r, result_ttl_s=1, max_backlog=1000, webhook_max_age_s=60)
    old, _ = store.enqueue("m", [b"x"], version="1")
    wait_for(lambda: not r.exists(keys.job(old["id"])), 5, "the job to expire")
    new, _ = store.enqueue("m", [b"x"], version="1")
    assert r.zrange(keys.tenant_jobs(""), 0, -1) == [new["id"].encode()]
    assert 0 < r.ttl(keys.tenant_jobs("")) <= 1
    monkeypatch.setattr(producer, "TENANT_JOBS_MAX", 3)
    store = Producer(r, result_ttl_s=60, max_backlog=1000, webhook_max_age_s=60)
    ids = [store.enqueue("m", [b"x"], version="1", fields={"tenant": "t"})[0]["id"]
           for _ in range(5)]
    assert r.zrevrange(keys.tenant_jobs("t"), 0, -1) == [i.encode() for i in ids[:1:-1]]
