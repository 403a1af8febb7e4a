"""Property-based tests (hypothesis) of every request parser, against a real Redis: whatever the
body, headers or query string, the answer is never a 5xx (but the protocols' 504 when a valid
request finds no worker before its deadline), every error is the endpoint's own JSON error
shape, and a 4xx leaves Redis as it was: nothing queued, nothing written.

Requests are mostly valid ones with some fields made hostile, so that each check is reached
with everything before it passing; some are arbitrary JSON or bytes."""
import base64
import io
import json
import string
import struct
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from api.app import create_app
from jobs import keys
from stack.processes import ROOT, queued_inputs
from tests.test_api import make_repo, png_bytes

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MAX_JSON_BYTES, MAX_JSON_DEPTH, MAX_INPUTS = 300_000, 32, 8
STREAMS = (keys.stream("shapes", 1), keys.stream("games", 1))
PNG = png_bytes((8, 8))
PNG_B64 = base64.b64encode(PNG).decode()
CHECKS = settings(deadline=None, max_examples=200,
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def client(redis_server, tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("repo"))
    make_repo(repo, "games", config=json.loads((ROOT / "models/games/config.json").read_text()))
    app = create_app({
        "redis_url": redis_server.url, "model_repository": str(repo),
        # Valid synchronous requests find no worker: let their deadline come at once.
        "max_long_poll_s": 0.02, "max_backlog": 10**9, "max_inputs_per_job": MAX_INPUTS,
        "max_json_bytes": MAX_JSON_BYTES, "max_json_depth": MAX_JSON_DEPTH,
        "webhook_secret": SECRET, "webhook_allow_networks": "127.0.0.1/32"})
    return app.test_client()


def redis_state(r) -> tuple:
    return (r.dbsize(), *(r.xlen(s) for s in STREAMS))


def check(resp, before: tuple, r, protocol: bool = False):
    """The properties every answer has. `protocol`: TF Serving or KServe, whose errors are
    {"error": "..."}; otherwise {"error": {"code", "message"}}."""
    status, body = resp.status_code, resp.get_json(silent=True)
    text = resp.get_data(as_text=True)[:300]
    if protocol and status == 504:  # valid, queued, and canceled at its deadline
        assert "deadline" in body["error"], text
        return body
    assert status < 500, text
    if status >= 400:
        assert isinstance(body, dict) and list(body) == ["error"], text
        if protocol:
            assert isinstance(body["error"], str) and body["error"], text
        else:
            error = body["error"]
            assert set(error) == {"code", "message"}, text
            assert isinstance(error["code"], str) and isinstance(error["message"], str), text
        assert redis_state(r) == before, f"a {status} changed Redis: {text}"
    return body


# --- strategies ------------------------------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
HEADER_TEXT = st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=40)
NUMBERS = st.one_of(st.integers(-3, 3), st.floats(), st.integers(-10**400, 10**400),
                    st.booleans())
JSON = st.recursive(st.none() | st.booleans() | NUMBERS | TEXT,
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)
HOSTILE = st.one_of(
    st.sampled_from([10**400, -10**400, 2**63, 2**64, -1, 0, 1e308, float("nan"), float("inf"),
                     True, "", "x", [], {}, None, [[[[]]]], [0] * 300]), NUMBERS, JSON)


def sometimes_hostile(valid, one_in: int = 5):
    """Values from `valid`, and one time in `one_in` a hostile one instead."""
    return st.integers(1, one_in).flatmap(lambda i: HOSTILE if i == 1 else valid)


def optional(**fields) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional=fields)


IMAGE_BYTES = st.one_of(st.just(PNG), st.binary(max_size=200),
                        st.binary(min_size=1, max_size=8).map(lambda b: PNG[:40] + b + PNG[48:]),
                        st.integers(1, len(PNG) - 1).map(lambda n: PNG[:n]))
B64_TEXT = st.one_of(st.just(PNG_B64), st.just(PNG_B64), st.just("data:image/png;base64,"
                                                                 + PNG_B64),
                     IMAGE_BYTES.map(lambda b: base64.b64encode(b).decode()),
                     st.sampled_from(["data:,", "%%", PNG_B64[:-1], PNG_B64 + "\n"]), TEXT)
# Webhook URLs whose hosts need no DNS lookup (IP literals, names the guard knows).
URLS = st.builds("{}://{}{}{}".format,
                 st.sampled_from(["http", "https", "ftp", "javascript", "HTTP", ""]),
                 st.sampled_from(["127.0.0.1", "127.0.0.2", "[::1]", "10.0.0.1", "8.8.8.8",
                                  "2130706433", "0x7f.1", "169.254.169.254", "u:p@8.8.8.8",
                                  "metadata.google.internal", "[::ffff:127.0.0.1]", "", "["]),
                 st.sampled_from(["", ":9", ":99999", ":-1", ":x"]),
                 st.one_of(st.just("/hook"), TEXT))
WEBHOOK = st.one_of(st.sampled_from(["http://127.0.0.1:9/hook", "http://8.8.8.8/hook"]), URLS,
                    TEXT, st.just("http://8.8.8.8/" + "a" * 2100))
EVENT = st.one_of(st.sampled_from(["started", "completed", " started ", "finished", "",
                                   "started,completed", "completed,,"]), TEXT)
OPTIONS = optional(webhook=sometimes_hostile(WEBHOOK), webhook_events_filter=sometimes_hostile(
    st.lists(EVENT, max_size=3)))
HEADERS = optional(**{
    "Prefer": st.one_of(HEADER_TEXT, st.builds("respond-async, wait={}".format, st.one_of(
        st.integers(0, 10**30), st.floats(0, 1e308).map(str), st.sampled_from(
            ["0.01", "1e309", "-1", "nan", "01", ".5", "5."])))),
    "Idempotency-Key": st.one_of(HEADER_TEXT, st.sampled_from(["k1", "k2", "", " ", "a" * 256,
                                                              "a" * 255, "tab\there"]))})
NAMES = [f"g{i}" for i in range(1, 11)]
ROW = st.lists(st.integers(0, 1), min_size=10, max_size=10)
INSTANCE = sometimes_hostile(st.one_of(
    ROW, ROW.map(lambda row: dict(zip(NAMES, row))),
    st.lists(sometimes_hostile(st.integers(0, 1), 10), min_size=9, max_size=11),
    st.fixed_dictionaries({n: sometimes_hostile(st.integers(0, 1), 10) for n in NAMES}),
    st.dictionaries(st.sampled_from(NAMES + ["x"]), NUMBERS, max_size=11)))


def nested(depth: int, leaf="x") -> str:
    return "[" * depth + json.dumps(leaf) + "]" * depth


def mutate(data: bytes, draw) -> bytes:
    """A few bytes of `data` flipped, cut or inserted."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        if not out:
            break
        at = draw(st.integers(0, len(out) - 1))
        kind = draw(st.sampled_from(["set", "cut", "insert"]))
        if kind == "set":
            out[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del out[at:at + draw(st.integers(1, 40))]
        else:
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(out)


@st.composite
def json_bodies(draw, document) -> bytes:
    """Mostly a document from `document` as JSON; else that JSON mutated, any JSON, or bytes."""
    kind = draw(st.sampled_from(["document"] * 5 + ["mutated", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    raw = json.dumps(draw(document)).encode()
    return mutate(raw, draw) if kind == "mutated" else raw


# --- submit: multipart, raw image, JSON base64, tensor instances -----------------------------

@st.composite
def multipart(draw) -> tuple[bytes, str]:
    """A multipart body: well formed with random fields, or that body mutated; its boundary."""
    boundary = draw(st.sampled_from(["AaB03x", "x" * 70, "b"]))
    parts = draw(st.lists(st.tuples(
        st.sampled_from(["image", "image", "webhook", "webhook_events_filter", "other", ""]),
        st.one_of(IMAGE_BYTES, TEXT.map(str.encode), WEBHOOK.map(str.encode),
                  EVENT.map(str.encode)),
        st.one_of(st.none(), st.sampled_from(["a.png", "", "../../etc/passwd", "é.png"]))),
        max_size=MAX_INPUTS + 2))
    body = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
                 + value + b"\r\n")
    body += f"--{boundary}--\r\n".encode()
    if draw(st.integers(0, 3)) == 0:
        body = mutate(body, draw)
    return body, boundary


@CHECKS
@given(form=multipart(), headers=HEADERS,
       content_type=st.sampled_from(["multipart/form-data; boundary={}"] * 4 + [
           "multipart/form-data", "multipart/form-data; boundary=",
           "multipart/mixed; boundary={}"]))
def test_multipart_submit(client, r, form, headers, content_type):
    body, boundary = form
    before = redis_state(r)
    resp = client.post("/v1/models/shapes/jobs", data=body, headers=headers,
                       content_type=content_type.format(boundary))
    check(resp, before, r)


@CHECKS
@given(data=IMAGE_BYTES, headers=HEADERS,
       query=st.lists(st.tuples(st.sampled_from(["webhook", "webhook_events_filter", "x"]),
                                st.one_of(WEBHOOK, EVENT)), max_size=3),
       content_type=st.sampled_from(["image/png", "image/jpeg", "image/webp", "image/bmp",
                                     "image/gif", "image/tiff", "image/svg+xml",
                                     "application/octet-stream"]))
def test_raw_image_submit(client, r, data, headers, query, content_type):
    before = redis_state(r)
    resp = client.post("/v1/models/shapes/jobs", data=data, headers=headers,
                       content_type=content_type, query_string=query)
    body = check(resp, before, r)
    if content_type in ("image/tiff", "image/svg+xml", "application/octet-stream"):
        assert resp.status_code == 415 and body["error"]["code"] == "unsupported_media_type"


IMAGES_DOCUMENT = st.one_of(
    st.builds(lambda images, options: {"images": images, **options},
              sometimes_hostile(st.lists(sometimes_hostile(st.fixed_dictionaries(
                  {"b64": B64_TEXT})), min_size=1, max_size=MAX_INPUTS + 1), 8), OPTIONS),
    sometimes_hostile(st.fixed_dictionaries({"instances": st.lists(INSTANCE, max_size=2)})))


@CHECKS
@given(body=json_bodies(IMAGES_DOCUMENT), headers=HEADERS)
def test_json_base64_submit(client, r, body, headers):
    before = redis_state(r)
    resp = client.post("/v1/models/shapes/jobs", data=body, headers=headers,
                       content_type="application/json")
    check(resp, before, r)


TENSOR_DOCUMENT = st.one_of(
    st.builds(lambda instances, options: {"instances": instances, **options},
              sometimes_hostile(st.lists(INSTANCE, min_size=1, max_size=MAX_INPUTS + 1), 8),
              OPTIONS),
    sometimes_hostile(st.fixed_dictionaries({"images": st.lists(
        st.fixed_dictionaries({"b64": B64_TEXT}), max_size=2)})))


@CHECKS
@given(body=json_bodies(TENSOR_DOCUMENT), headers=HEADERS,
       content_type=st.sampled_from(["application/json"] * 4 + [
           "application/json; charset=utf-8", "text/plain", "image/png",
           "multipart/form-data; boundary=x"]))
def test_tensor_instances_submit(client, r, body, headers, content_type):
    before = redis_state(r)
    resp = client.post("/v1/models/games/jobs", data=body, headers=headers,
                       content_type=content_type)
    check(resp, before, r)


# --- long-poll ---------------------------------------------------------------------------------

WAITS = st.one_of(TEXT, st.floats().map(str), st.integers(-10**30, 10**30).map(str),
                  st.sampled_from(["nan", "inf", "-0", "1e309", "0x1", "1_0", " 1", "\u0661",
                                   "0.01", "", "9" * 5000]))


@CHECKS
@given(data=st.data())
def test_get_job_with_wait(client, r, data):
    if not r.exists(keys.stream("shapes", 1)):  # one real job to find (Redis was flushed)
        client.post("/v1/models/shapes/jobs", data=PNG, content_type="image/png")
    job_ids = [k.decode().split(":")[2] for k in r.scan_iter(keys.job("*"), count=1000)
               if k.count(b":") == 2]
    # Any text but "/", which the router reads before the job id parser sees it.
    job_id = data.draw(st.one_of(st.sampled_from(job_ids),
                                 TEXT.filter(lambda t: t and "/" not in t),
                                 st.text(string.ascii_letters + "-_", min_size=16,
                                         max_size=64)))
    wait = data.draw(st.lists(WAITS, max_size=2))
    before = redis_state(r)
    resp = client.get(f"/v1/jobs/{quote(job_id, safe='')}",
                      query_string=[("wait", w) for w in wait])
    body = check(resp, before, r)
    assert resp.status_code in (200, 400, 404), resp.get_data(as_text=True)
    if resp.status_code == 400:
        assert body["error"]["code"] == "invalid_wait"
    if resp.status_code == 200:
        assert body["id"] == job_id


# --- TF Serving :predict ---------------------------------------------------------------------

def key_or_text(name: str):
    """An object key: `name`, or sometimes any other text."""
    return st.one_of(st.just(name), st.just(name), TEXT)


TF_IMAGE = sometimes_hostile(st.one_of(
    st.fixed_dictionaries({"b64": B64_TEXT}),
    st.fixed_dictionaries({"image": st.fixed_dictionaries({"b64": B64_TEXT})})))
TF_DOCUMENTS = {
    "shapes": st.one_of(
        st.builds(lambda xs, extra: {"instances": xs, **extra},
                  sometimes_hostile(st.lists(TF_IMAGE, min_size=1, max_size=3)),
                  optional(signature_name=sometimes_hostile(st.just("serving_default")))),
        st.builds(lambda name, xs: {"inputs": {name: xs}}, key_or_text("image"),
                  st.lists(TF_IMAGE, max_size=3))),
    "games": st.one_of(
        st.builds(lambda xs: {"instances": xs}, sometimes_hostile(st.lists(INSTANCE,
                                                                           max_size=3))),
        st.builds(lambda xs: {"inputs": xs}, st.lists(INSTANCE, min_size=1, max_size=3)),
        st.builds(lambda name, xs: {"inputs": {name: xs}}, key_or_text("input"),
                  st.lists(ROW, max_size=3)),
        st.fixed_dictionaries({"instances": st.lists(ROW, max_size=1),
                               "inputs": st.lists(ROW, max_size=1)}))}


@st.composite
def tf_requests(draw) -> tuple[str, bytes]:
    """(model, body): mostly a request for that model; sometimes for another, or none."""
    model = draw(st.sampled_from(sorted(TF_DOCUMENTS)))
    body = draw(json_bodies(TF_DOCUMENTS[model]))
    return draw(st.sampled_from([model] * 5 + ["shapes", "games", "nope"])), body


@CHECKS
@given(request=tf_requests(), version=st.sampled_from(["", "", "/versions/1", "/versions/9"]),
       timeout=st.one_of(st.none(), st.none(), WAITS))
def test_tf_serving_predict(client, r, request, version, timeout):
    model, body = request
    before = redis_state(r)
    resp = client.post(f"/v1/models/{model}{version}:predict", data=body,
                       query_string={} if timeout is None else {"timeout": timeout},
                       content_type="application/json")
    check(resp, before, r, protocol=True)


# --- KServe V2 /infer: JSON and the binary tensor extension ----------------------------------

DATATYPES = {"FP32": "f", "FP64": "d", "INT32": "i", "INT64": "q", "UINT8": "B"}
KS_PARAMS = sometimes_hostile(optional(
    binary_data_output=sometimes_hostile(st.booleans()),
    timeout=sometimes_hostile(st.one_of(st.floats(0.001, 5), st.integers(1, 5)), 3)))
KS_OUTPUTS = sometimes_hostile(st.lists(sometimes_hostile(st.fixed_dictionaries(
    {"name": sometimes_hostile(st.just("output_0"))},
    optional={"parameters": sometimes_hostile(optional(binary_data=st.booleans()))})),
    max_size=1))


def bytes_elements(items: list[bytes]) -> bytes:
    """Triton's binary BYTES layout: a little-endian uint32 length before each element."""
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


@st.composite
def ks_requests(draw) -> tuple[str, bytes, dict]:
    """(path, body, headers): a KServe request, its tensor as JSON data or as binary after the
    JSON (binary_data_size, Inference-Header-Content-Length), with some fields hostile."""
    n = draw(st.integers(1, 3))
    if draw(st.booleans()):
        model, datatype, shape = "shapes", "BYTES", [n]
        raw = bytes_elements(draw(st.lists(IMAGE_BYTES, min_size=n, max_size=n)))
        data = draw(st.lists(B64_TEXT, min_size=n, max_size=n))
    else:
        model, datatype, shape = "games", draw(st.sampled_from(sorted(DATATYPES))), [n, 10]
        rows = draw(st.lists(ROW, min_size=n, max_size=n))
        flat = [v for row in rows for v in row]
        raw = struct.pack(f"<{len(flat)}{DATATYPES[datatype]}", *flat)
        data = rows if draw(st.booleans()) else flat
    tensor = {"name": draw(sometimes_hostile(st.just("image" if model == "shapes" else "input"))),
              "shape": draw(sometimes_hostile(st.one_of(st.just(shape), st.lists(
                  sometimes_hostile(st.integers(0, 12)), max_size=3)))),
              "datatype": draw(sometimes_hostile(st.one_of(st.just(datatype), st.sampled_from(
                  ["BYTES", "FP32", "BOOL", "FP16"]))))}
    binary = draw(st.booleans())
    if binary:
        tensor["parameters"] = {"binary_data_size": draw(sometimes_hostile(st.one_of(
            st.just(len(raw)), st.integers(0, len(raw) + 2))))}
        if draw(st.integers(0, 4)) == 0:
            raw = mutate(raw, draw)
    else:
        tensor["data"], raw = draw(sometimes_hostile(st.just(data), 4)), b""
    doc = {"inputs": draw(sometimes_hostile(st.just([tensor]), 8)),
           **draw(optional(outputs=KS_OUTPUTS, parameters=KS_PARAMS,
                           id=sometimes_hostile(TEXT)))}
    header = draw(json_bodies(st.just(doc)))
    headers = {}
    if binary or draw(st.integers(0, 4)) == 0:
        headers["Inference-Header-Content-Length"] = draw(st.one_of(
            st.just(str(len(header))), st.just(str(len(header))),
            st.integers(-2, 2).map(lambda d: str(len(header) + d)),
            st.integers(0, 10**30).map(str), HEADER_TEXT,
            st.sampled_from(["\u00b2", "1" * 5000, " 12", "0x10", "+5", ""])))
    version = draw(st.sampled_from(["", "", "/versions/1", "/versions/9"]))
    model = draw(st.sampled_from([model] * 5 + ["shapes", "games", "nope"]))
    return f"/v2/models/{model}{version}/infer", header + raw, headers


@CHECKS
@given(request=ks_requests())
def test_kserve_infer(client, r, request):
    path, body, headers = request
    before = redis_state(r)
    binary = "Inference-Header-Content-Length" in headers
    resp = client.post(path, data=body, headers=headers,
                       content_type="application/octet-stream" if binary else "application/json")
    check(resp, before, r, protocol=True)


# --- the JSON limits, at their edges, on every JSON parser -----------------------------------

JSON_ENDPOINTS = [("/v1/models/shapes/jobs", False), ("/v1/models/games/jobs", False),
                  ("/v1/models/games:predict", True), ("/v2/models/games/infer", True)]


def error_code(resp, protocol: bool) -> str:
    """The inferq error code; for a protocol, which limit its message names."""
    body = resp.get_json()
    if not protocol:
        return body["error"]["code"]
    for code, setting in (("json_too_large", "INFERQ_MAX_JSON_BYTES"),
                          ("json_too_deep", "INFERQ_MAX_JSON_DEPTH")):
        if setting in body["error"]:
            return code
    return "other"


@pytest.mark.parametrize("path,protocol", JSON_ENDPOINTS)
@settings(deadline=None, max_examples=25,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(depth=st.integers(0, 3 * MAX_JSON_DEPTH), key=st.sampled_from(["images", "instances",
                                                                      "inputs"]))
def test_json_nested_past_the_depth_limit_is_json_too_deep(client, r, path, protocol, depth,
                                                           key):
    body = ('{"%s": %s}' % (key, nested(depth))).encode()  # depth + 1 levels in all
    before = redis_state(r)
    resp = client.post(path, data=body, content_type="application/json")
    check(resp, before, r, protocol)
    too_deep = resp.status_code == 400 and error_code(resp, protocol) == "json_too_deep"
    assert too_deep == (depth + 1 > MAX_JSON_DEPTH), resp.get_data(as_text=True)[:200]


@pytest.mark.parametrize("path,protocol", JSON_ENDPOINTS)
def test_json_deeper_than_any_parser_goes_is_json_too_deep(client, r, path, protocol):
    for body in (b"[" * 100_000, b"[" * 50_000 + b"]" * 50_000, b'{"a":' * 40_000,
                 b'["\\"' + b"[" * 50_000 + b'"]'):  # the last one is a string: not deep
        before = redis_state(r)
        resp = client.post(path, data=body, content_type="application/json")
        check(resp, before, r, protocol)
        deep = b"\\" not in body
        assert resp.status_code == 400
        assert (error_code(resp, protocol) == "json_too_deep") == deep


@pytest.mark.parametrize("path,protocol", JSON_ENDPOINTS)
def test_json_over_the_size_limit_is_413_json_too_large(client, r, path, protocol):
    def body_of(size: int) -> bytes:
        head = b'{"images": [{"b64": "'
        return head + b"A" * (size - len(head) - 4) + b'"}]}'

    at_limit, over = body_of(MAX_JSON_BYTES), body_of(MAX_JSON_BYTES + 1)
    assert len(at_limit) == MAX_JSON_BYTES
    before = redis_state(r)
    resp = client.post(path, data=at_limit, content_type="application/json")
    check(resp, before, r, protocol)
    assert resp.status_code != 413 and error_code(resp, protocol) != "json_too_large"
    resp = client.post(path, data=over, content_type="application/json")
    check(resp, before, r, protocol)
    assert resp.status_code == 413 and error_code(resp, protocol) == "json_too_large"


def test_kserve_binary_header_length_is_checked_against_the_json_limits(client, r):
    header = b'{"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP32", ' \
             b'"parameters": {"binary_data_size": 40}}], "pad": "' + b" " * MAX_JSON_BYTES + b'"}'
    binary = struct.pack("<10f", *[0.0] * 10)
    before = redis_state(r)
    resp = client.post("/v2/models/games/infer", data=header + binary,
                       content_type="application/octet-stream",
                       headers={"Inference-Header-Content-Length": str(len(header))})
    check(resp, before, r, protocol=True)
    assert resp.status_code == 413 and "INFERQ_MAX_JSON_BYTES" in resp.get_json()["error"]
    for length in ("\u00b2", "1" * 5000, str(len(header) + 41), "-1", "abc"):
        resp = client.post("/v2/models/games/infer", data=header + binary,
                           content_type="application/octet-stream",
                           headers={"Inference-Header-Content-Length": length})
        check(resp, before, r, protocol=True)
        assert resp.status_code == 400
        assert "Inference-Header-Content-Length" in resp.get_json()["error"]


def test_json_that_is_not_utf8_is_invalid_json(client, r):
    body = json.dumps({"images": [{"b64": PNG_B64}]}).encode("utf-16")
    before = redis_state(r)
    resp = client.post("/v1/models/shapes/jobs", data=body, content_type="application/json")
    check(resp, before, r)
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_json"


# --- the raw image submit, as a user sends it ------------------------------------------------

def test_raw_image_submit_takes_the_webhook_from_the_query(client, r):
    resp = client.post("/v1/models/shapes/jobs", data=PNG, content_type="image/png",
                       query_string={"webhook": "http://127.0.0.1:9/hook",
                                     "webhook_events_filter": "started,completed"})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    job = resp.get_json()
    record = r.hgetall(keys.job(job["id"]))
    assert record[b"webhook"] == b"http://127.0.0.1:9/hook"
    assert record[b"webhook_events"] == b"completed,started"
    assert queued_inputs(r, keys.stream("shapes", 1))[-1] == PNG
    before = redis_state(r)
    for query, code in [({"webhook": "http://10.0.0.1/"}, "invalid_webhook"),
                        ({"webhook": "http://127.0.0.1:9/", "webhook_events_filter": "done"},
                         "invalid_webhook"),
                        ({"webhook_events_filter": "completed"}, "invalid_webhook")]:
        resp = client.post("/v1/models/shapes/jobs", data=PNG, content_type="image/png",
                           query_string=query)
        check(resp, before, r)
        assert resp.status_code == 400 and resp.get_json()["error"]["code"] == code


def test_raw_and_multipart_submits_of_one_image_are_the_same_request(client, r):
    """The same image by either route, with one Idempotency-Key: one job."""
    headers = {"Idempotency-Key": "same-image"}
    raw = client.post("/v1/models/shapes/jobs", data=PNG, content_type="image/jpeg",
                      headers=headers)
    form = client.post("/v1/models/shapes/jobs", data={"image": (io.BytesIO(PNG), "a.png")},
                       content_type="multipart/form-data", headers=headers)
    assert raw.status_code == form.status_code == 202
    assert form.get_json()["id"] == raw.get_json()["id"]
    assert form.headers["Idempotent-Replayed"] == "true"


def _jpeg_with_tables() -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (40, 24), (90, 160, 30)).save(buf, "JPEG", quality=80,
                                                    restart_marker_blocks=2)
    return buf.getvalue()


JPEG = _jpeg_with_tables()
SCAN = JPEG.index(b"\xff\xda")


@CHECKS
@given(at=st.integers(2, SCAN + 12), change=st.binary(min_size=1, max_size=4),
       replace=st.booleans())
def test_the_api_reads_a_jpeg_header_as_pillow_does_or_leaves_it_to_pillow(at, change,
                                                                             replace):
    """The submit path reads plain JPEG headers itself (jobs.images._plain_jpeg_frame), not with
    Pillow. On headers damaged anywhere before the first scan, it either reads the same size
    Pillow reads from a file Pillow opens, or declines, and then Pillow judges the file."""
    from PIL import Image
    from jobs.images import _plain_jpeg_frame
    data = JPEG[:at] + change + JPEG[at + (len(change) if replace else 0):]
    frame = _plain_jpeg_frame(data)
    if frame is not None:
        im = Image.open(io.BytesIO(data), formats=["JPEG"])
        assert frame[:2] == im.size
        assert frame[2] <= len(data)


def test_a_plain_jpeg_header_is_read_without_pillow():
    from jobs.images import _plain_jpeg_frame
    assert _plain_jpeg_frame(JPEG)[:2] == (40, 24)


@pytest.mark.parametrize("data", [b"\xff\xd8\xff\xe0\x00\x02\xff\xc0\x00\x02",
                                  b"\xff\xd8\xff\xc0\x00\x02", JPEG[:SCAN]])
def test_a_jpeg_header_cut_short_is_400_not_a_crash(data):
    from jobs.images import check_image
    from jobs.inputs import InputError
    with pytest.raises(InputError) as caught:
        check_image(data, 10**6, "input 0")
    assert caught.value.status == 400
