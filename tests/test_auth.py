"""API keys, tenants and rate limits, against a real redis-server (Flask's test client)."""
import io

import pytest

from api import auth
from api.app import create_app
from jobs import keys
from jobs.settings import SettingsError
from stack.processes import free_port
from tests.test_api import make_repo, png_bytes

KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-0123456789abcdef"
ADMIN = "admin-0123456789abcdef"
AUTH_A = {"Authorization": f"Bearer {KEY_A}"}
AUTH_B = {"Authorization": f"Bearer {KEY_B}"}
AUTH_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


def make_app(redis_url, repo, **settings):
    config = {"redis_url": redis_url, "model_repository": str(repo),
              "api_keys": f"{KEY_A}=alpha,{KEY_B}=beta", "admin_keys": f"{ADMIN}=ops"}
    config.update(settings)
    return create_app(config)


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "models")


@pytest.fixture
def client(redis_url, repo):
    return make_app(redis_url, repo).test_client()


def submit(client, headers, **kw):
    return client.post("/v1/models/shapes/jobs", headers=headers, content_type="multipart/form-data",
                       data={"image": [(io.BytesIO(png_bytes()), "a.png")]}, **kw)


def test_every_endpoint_but_health_and_docs_needs_a_key(client):
    app = client.application
    open_endpoints = auth.PUBLIC | auth.DOCS | {"static"}
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in open_endpoints:
            continue
        url = rule.rule.replace("<model>", "shapes").replace("<int:version>", "1").replace(
            "<job_id>", "0" * 32).replace("<path:filename>", "x").replace(
            "<asset>", "swagger-ui.css")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            for headers in ({}, {"Authorization": "Bearer not-a-key-0123456789"},
                            {"Authorization": f"Basic {KEY_A}"}):
                resp = client.open(url, method=method, headers=headers)
                assert resp.status_code == 401, (method, url, headers, resp.status_code)
                assert resp.json["error"]["code"] in ("unauthorized", "invalid_key")
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                checked += 1
    assert checked >= 3 * 20  # every route of the API, not a handful
    for url in ("/healthz", "/v2/health/live", "/openapi.json", "/docs",
                "/docs/assets/swagger-ui.css", "/v1", "/console", "/console/examples",
                "/console/examples/circle.png"):
        assert client.get(url).status_code == 200, url
    assert client.get("/").status_code == 302
    assert client.get("/favicon.ico").status_code == 204
    assert client.get("/readyz").status_code == 503  # no worker: not ready, but not 401 either


@pytest.mark.parametrize("headers,why", [
    ({}, "this server needs an API key"),
    ({"Authorization": KEY_A}, "needs the word `Bearer` before the key"),
    ({"Authorization": f"Token {KEY_A}"}, "the Authorization scheme must be Bearer"),
    ({"Authorization": f"Basic {KEY_A}"}, "the Authorization scheme must be Bearer"),
    ({"Authorization": "Bearer "}, "no key after `Bearer`"),
    ({"X-API-Key": KEY_A}, "the key goes in the Authorization header, not in X-API-Key"),
])
def test_a_key_sent_another_way_is_told_the_expected_form(client, headers, why):
    resp = client.get("/v1/models", headers=headers)
    assert resp.status_code == 401 and resp.json["error"]["code"] == "unauthorized"
    message = resp.json["error"]["message"]
    assert why in message and message.endswith("send `Authorization: Bearer <key>`")
    assert KEY_A not in message  # a key sent the wrong way is not echoed
    assert client.get("/v1/models", headers={**headers, **AUTH_A}).status_code == 200


def test_docs_can_be_closed_too(redis_url, repo):
    client = make_app(redis_url, repo, public_docs=False).test_client()
    for url in ("/openapi.json", "/docs", "/docs/assets/swagger-ui-bundle.js"):
        assert client.get(url).status_code == 401, url
        assert client.get(url, headers=AUTH_A).status_code == 200, url
    assert client.get("/healthz").status_code == 200


def test_a_job_is_its_tenants_alone(client, r):
    resp = submit(client, AUTH_A)
    assert resp.status_code == 202
    job_id = resp.json["id"]
    assert r.hget(keys.job(job_id), "tenant") == b"alpha"
    assert client.get(f"/v1/jobs/{job_id}", headers=AUTH_A).json["id"] == job_id
    missing = "NoSuchJob0000000000000"
    for method, path in (("GET", ""), ("GET", "?wait=1"), ("POST", "/cancel"),
                         ("GET", "/deliveries")):
        theirs = client.open(f"/v1/jobs/{job_id}{path}", method=method, headers=AUTH_B)
        absent = client.open(f"/v1/jobs/{missing}{path}", method=method, headers=AUTH_B)
        assert theirs.status_code == absent.status_code == 404
        assert theirs.json["error"]["code"] == absent.json["error"]["code"] == "unknown_job"
        assert (theirs.json["error"]["message"].replace(job_id, "ID")
                == absent.json["error"]["message"].replace(missing, "ID"))
    assert r.hget(keys.job(job_id), "status") == b"queued"  # beta's cancel did nothing
    assert client.get(f"/v1/jobs/{job_id}/deliveries", headers=AUTH_A).status_code == 200
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=AUTH_A).json["status"] == "canceled"


def test_idempotency_keys_belong_to_their_tenant(client):
    same = {"Idempotency-Key": "order-17"}
    a1 = submit(client, {**AUTH_A, **same})
    a2 = submit(client, {**AUTH_A, **same})
    b1 = submit(client, {**AUTH_B, **same})
    assert a1.json["id"] == a2.json["id"] and a2.headers["Idempotent-Replayed"] == "true"
    assert b1.status_code == 202 and b1.json["id"] != a1.json["id"]
    assert "Idempotent-Replayed" not in b1.headers


def test_model_upload_and_removal_need_an_admin_key(client, repo):
    for headers, status, code in ((AUTH_A, 403, "admin_required"), ({}, 401, "unauthorized"),
                                  (AUTH_ADMIN, 400, "no_model_file")):
        resp = client.put("/v1/models/shapes/versions/2", headers=headers,
                          content_type="multipart/form-data", data={})
        assert (resp.status_code, resp.json["error"]["code"]) == (status, code)
    resp = client.delete("/v1/models/shapes/versions/1", headers=AUTH_B)
    assert (resp.status_code, resp.json["error"]["code"]) == (403, "admin_required")
    assert (repo / "shapes" / "1").is_dir()
    assert client.delete("/v1/models/shapes/versions/1", headers=AUTH_ADMIN).status_code == 202
    assert not (repo / "shapes" / "1").exists()


def test_an_admin_key_is_also_its_tenants_key(client):
    resp = submit(client, AUTH_ADMIN)
    assert resp.status_code == 202
    assert client.get(f"/v1/jobs/{resp.json['id']}", headers=AUTH_A).status_code == 404
    assert client.get(f"/v1/jobs/{resp.json['id']}", headers=AUTH_ADMIN).status_code == 200


def test_a_key_file_is_read_and_reloaded_when_it_changes(redis_url, repo, tmp_path, monkeypatch):
    monkeypatch.setattr(auth, "RELOAD_CHECK_S", 0)
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text(f"# key tenant\n{KEY_A} alpha\n\n{KEY_B}   beta  # a comment\n")
    client = make_app(redis_url, repo, api_keys=f"@{keyfile}").test_client()
    assert submit(client, AUTH_A).status_code == 202
    assert submit(client, AUTH_B).status_code == 202
    keyfile.write_text(f"{KEY_A} alpha\n")  # beta's key revoked
    assert submit(client, AUTH_B).status_code == 401
    assert submit(client, AUTH_A).status_code == 202
    keyfile.write_text("this line is broken\n")  # a bad file keeps the keys we had
    assert submit(client, AUTH_A).status_code == 202


@pytest.mark.parametrize("settings,message", [
    ({"api_keys": "short=alpha"}, "INFERQ_API_KEYS entry 1: keys must be at least 16"),
    ({"api_keys": f"{KEY_A}"}, "INFERQ_API_KEYS entry 1: expected a key and a tenant"),
    ({"api_keys": f"{KEY_A}=al pha"}, "tenant 'al pha' must be"),
    ({"api_keys": f"{KEY_A}=alpha,{KEY_A}=beta"}, "already given to tenant 'alpha'"),
    ({"admin_keys": f"{KEY_A}=beta"}, "names two tenants"),
    ({"api_keys": "@/nonexistent/keys.txt"}, "cannot read key file"),
    ({"rate_limit_submit": "lots"}, "INFERQ_RATE_LIMIT_SUBMIT must be limits"),
])
def test_bad_keys_and_limits_stop_the_api_at_start_with_the_variable_named(
        redis_url, repo, settings, message):
    with pytest.raises(SettingsError, match=message):
        make_app(redis_url, repo, **settings)


@pytest.mark.parametrize("variable,settings", [
    ("INFERQ_API_KEYS", {"api_keys": "change-me-tenant-a-key-0001=tenant-a"}),
    ("INFERQ_ADMIN_KEYS", {"admin_keys": f"{ADMIN}=ops,CHANGE-ME-admin-key-00000001=ops"}),
    ("INFERQ_API_KEYS", {"api_keys": "@KEYFILE"}),
])
def test_the_placeholder_keys_of_the_env_example_are_refused_at_start(
        redis_url, repo, tmp_path, variable, settings):
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text(f"{KEY_A} alpha\nchange-me-0123456789abcdef beta\n")
    settings = {k: v.replace("KEYFILE", str(keyfile)) for k, v in settings.items()}
    with pytest.raises(SettingsError) as refused:
        make_app(redis_url, repo, **settings)
    message = str(refused.value)
    assert message.startswith(variable) and "placeholder from .env.example" in message
    assert "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'" in message


def test_without_keys_the_api_is_open_and_admin_follows_the_switch(redis_url, repo):
    client = create_app({"redis_url": redis_url, "model_repository": str(repo)}).test_client()
    assert submit(client, {}).status_code == 202
    resp = client.delete("/v1/models/shapes/versions/1")
    assert (resp.status_code, resp.json["error"]["code"]) == (403, "admin_disabled")


def test_submits_are_rate_limited_per_tenant_with_retry_after(redis_url, repo, r):
    client = make_app(redis_url, repo, rate_limit_submit="3/minute",
                      rate_limit_read="5/minute").test_client()
    for _ in range(3):
        assert submit(client, AUTH_A).status_code == 202
    limited = submit(client, AUTH_A)
    assert limited.status_code == 429
    assert limited.json["error"]["code"] == "rate_limited"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert len(r.keys(keys.job("*"))) == 3  # the refused submit made no job
    # Another tenant has its own budget; reads have theirs; health is never limited.
    assert submit(client, AUTH_B).status_code == 202
    reads = [client.get("/v1/models", headers=AUTH_A).status_code for _ in range(6)]
    assert reads == [200] * 5 + [429]
    assert all(client.get("/healthz").status_code == 200 for _ in range(10))
    # The counters live in Redis under inferq's prefix, shared by every API process.
    assert r.keys(f"{keys.RATE_LIMITS}*")
    other_process = make_app(redis_url, repo, rate_limit_submit="3/minute").test_client()
    assert submit(other_process, AUTH_A).status_code == 429


def test_without_keys_callers_are_limited_by_address(redis_url, repo):
    client = create_app({"redis_url": redis_url, "model_repository": str(repo),
                         "rate_limit_submit": "2/minute"}).test_client()
    codes = [submit(client, {}).status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    other = submit(client, {}, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert other.status_code == 202


def test_with_redis_down_limits_and_keys_answer_503_not_500(repo):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client = make_app(dead, repo, rate_limit_submit="10/second",
                      rate_limit_read="10/second").test_client()
    assert submit(client, AUTH_A).status_code == 503
    assert client.get("/v1/jobs/" + "0" * 32, headers=AUTH_A).status_code == 503
    assert submit(client, {}).status_code == 401


def test_the_openapi_document_declares_the_keys_and_limits(redis_url, repo):
    from openapi_spec_validator import validate as validate_spec
    client = make_app(redis_url, repo, rate_limit_submit="5/second").test_client()
    doc = client.get("/openapi.json").json
    validate_spec(doc)
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    submit_op = doc["paths"]["/v1/models/{model}/jobs"]["post"]
    assert submit_op["security"] == [{"bearer": []}]
    assert {"401", "429"} <= set(submit_op["responses"])
    assert "security" not in doc["paths"]["/healthz"]["get"]
    open_doc = create_app({"redis_url": redis_url, "model_repository": str(repo)}).test_client(
    ).get("/openapi.json").json
    assert "securitySchemes" not in open_doc.get("components", {})
    assert "401" not in open_doc["paths"]["/v1/models/{model}/jobs"]["post"]["responses"]
