"""api/multipart.py, the fast split of plain multipart bodies, agrees with werkzeug's parser on
every body it takes, and takes what HTTP clients send."""
import io

from hypothesis import HealthCheck, given, settings, strategies as st
from urllib3 import encode_multipart_formdata
from werkzeug.formparser import parse_form_data

from api import multipart

MAX_PARTS, MAX_FIELD = 1000, 500_000


def werkzeug_parts(body: bytes, boundary: str):
    environ = {"REQUEST_METHOD": "POST", "CONTENT_TYPE": f"multipart/form-data; boundary={boundary}",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    _, form, files = parse_form_data(environ, max_form_parts=MAX_PARTS,
                                     max_form_memory_size=MAX_FIELD, silent=False)
    return (list(form.items(multi=True)),
            [(name, f.read()) for name, f in files.items(multi=True)])


def fast_parts(body: bytes, boundary: str):
    parsed = multipart.parse(body, boundary, MAX_PARTS, MAX_FIELD)
    if parsed is None:
        return None
    fields, files = parsed
    return list(fields.items(multi=True)), list(files.items(multi=True))


names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\"\\"),
                min_size=1, max_size=12)
parts = st.lists(st.one_of(
    st.tuples(names, st.text(max_size=40)),                                    # a text field
    st.tuples(names, st.tuples(names, st.binary(max_size=300), st.sampled_from(
        ["image/jpeg", "application/octet-stream"])))), min_size=1, max_size=6)  # a file


@settings(max_examples=300, deadline=None)
@given(parts, st.sampled_from([None, "b", "----WebKitFormBoundary7MA4YWxkTrZu0gW"]))
def test_what_clients_send_is_split_here_exactly_as_werkzeug_does(fields, boundary):
    body, ctype = encode_multipart_formdata(fields, boundary=boundary)
    boundary = ctype.split("boundary=", 1)[1]
    fast = fast_parts(body, boundary)
    assert fast is not None  # urllib3 (requests) bodies are plain: the fast path takes them
    assert fast == werkzeug_parts(body, boundary)


@st.composite
def mutated_bodies(draw):
    fields = draw(parts)
    body, ctype = encode_multipart_formdata(fields, boundary="XyZ")
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["set", "cut", "insert"]))
        if kind == "set" and at < len(data):
            data[at] = draw(st.sampled_from(b"\r\n-: \tXyZ\"a\x00\xff"))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            data[at:at] = draw(st.sampled_from(
                [b"\r\n", b"\n", b"\r", b"--XyZ", b"\r\n--XyZ", b"--", b" ", b":", b"\r\n\r\n"]))
    return bytes(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_bodies())
def test_a_damaged_body_is_either_left_to_werkzeug_or_split_as_werkzeug_does(body):
    fast = fast_parts(body, "XyZ")
    if fast is not None:
        assert fast == werkzeug_parts(body, "XyZ")


def test_unusual_bodies_are_left_to_werkzeug():
    plain = b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n--b--\r\n'
    assert fast_parts(plain, "b") == ([("a", "x")], [])
    assert fast_parts(b"preamble\r\n" + plain, "b") is None
    assert fast_parts(plain.replace(b"\r\n", b"\n"), "b") is None
    assert fast_parts(plain.replace(b'"a"\r\n', b'"a"\r\nContent-Type: text/plain; '
                                               b'charset=latin-1\r\n'), "b") is None
    assert fast_parts(plain.replace(b"form-data;", b"form-data;\r\n "), "b") is None
    assert fast_parts(plain, None) is None and fast_parts(plain, "é") is None
    assert multipart.parse(plain, "b", 0, MAX_FIELD) is None  # too many parts: werkzeug's 413
    assert multipart.parse(plain, "b", MAX_PARTS, 0) is None  # a field too large: the same
