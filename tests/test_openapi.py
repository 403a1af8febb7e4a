"""The OpenAPI document: valid OpenAPI 3, covers every route, and a live server (Redis, the API
under gunicorn, a worker serving `shapes`) answers schemathesis' generated requests with no
server error and nothing the document does not describe."""
import os
import re
import subprocess

import pytest
from openapi_spec_validator import validate

from api.app import create_app
from api.openapi import OPERATIONS
from stack.processes import BIN

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "response_headers_conformance")
# 503 (not ready, backlog full, Redis down) and 504 (a protocol request's deadline) are
# documented answers by design, which status_code_conformance holds to the operations that
# document them; any other 5xx is a bug.
CONFIG = """\
[cache]
enabled = false

[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503", "504"]
"""


@pytest.fixture
def app(redis_url):
    return create_app({"redis_url": redis_url})


def test_the_document_is_valid_openapi_3(app):
    doc = app.test_client().get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    validate(doc)


def test_every_route_is_documented(app):
    doc = app.test_client().get("/openapi.json").get_json()
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if method.lower() not in doc["paths"].get(path, {}):
                missing.append(f"{method} {path} ({rule.endpoint})")
    assert not missing, "add these to api/openapi.py OPERATIONS: " + ", ".join(missing)
    stale = set(OPERATIONS) - {rule.endpoint for rule in app.url_map.iter_rules()}
    assert not stale, f"api/openapi.py OPERATIONS names endpoints the app lacks: {stale}"


def test_docs_page_points_at_the_document(app):
    resp = app.test_client().get("/docs")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert "openapi.json" in resp.get_data(as_text=True)


@pytest.fixture(scope="module")
def live_api(module_stack_factory):
    # Short long-polls and deadlines keep each fuzzed request quick; the stack has a batch
    # store of its own for the batches the fuzzer uploads.
    return module_stack_factory(models=["shapes"], max_long_poll_s=2, max_inputs_per_job=8).base


def test_live_server_conforms_to_the_document(live_api, tmp_path):
    """Every operation, in every phase (the document's examples, boundary and negative
    values, random requests, and request chains that follow the document's links).
    The CLI rather than schemathesis' pytest plugin, which does not run under pytest 9.2;
    one worker, because with several threads Hypothesis trips CPython 3.11.7's "AST
    constructor recursion depth mismatch". INFERQ_FUZZ_EXAMPLES=500 makes a deeper run; a
    failure prints a curl line and the seed, which INFERQ_FUZZ_SEED replays."""
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    examples = os.environ.get("INFERQ_FUZZ_EXAMPLES", "25")
    cmd = [str(BIN / "schemathesis"), "--config-file", str(tmp_path / "schemathesis.toml"),
           "run", f"{live_api}/openapi.json", "--url", live_api, "--checks", ",".join(CHECKS),
           "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", examples,
           "--workers", "1", "--request-timeout", "30", "--no-color"]
    if os.environ.get("INFERQ_FUZZ_SEED"):
        cmd += ["--seed", os.environ["INFERQ_FUZZ_SEED"]]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-30000:]
