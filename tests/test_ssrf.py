"""The webhook SSRF guard: URL vetting with stub resolvers, and post() against loopback servers."""
import http.server
import socket
import threading
import time

import pytest

from jobs.ssrf import Target, UnsafeURL, check_url, parse_networks, post

PUBLIC = "93.184.215.14"


def public(host, port):
    """A stub resolver that calls every name public: whatever is refused below is refused
    by the URL itself, not by DNS."""
    return [PUBLIC]


def no_dns(host, port):
    raise AssertionError(f"resolver must not be consulted for {host!r}")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/", "http://[::1]/", "http://0.0.0.0/", "http://[::]/",
    "http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data", "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:169.254.169.254]/", "http://[::127.0.0.1]/",
    "http://2130706433/", "http://0177.0.0.1/", "http://0x7f.0.0.1/", "http://0x7f000001/",
    "http://127.1/", "http://127.0.0.1./", "http://100.64.0.1/", "http://224.0.0.1/",
    "http://255.255.255.255/", "http://[fd00::1]/", "http://[fe80::1]/", "http://[fec0::1]/",
    "http://[ff02::1]/", "http://[64:ff9b::7f00:1]/", "http://[2002:7f00:1::]/",
    "http://1.2.3.4.5/", "http://08.0.0.1/",
])
def test_ip_literals_and_numeric_tricks_are_refused_without_dns(url):
    with pytest.raises(UnsafeURL):
        check_url(url, resolve=no_dns)


@pytest.mark.parametrize("url", [
    "http://metadata.google.internal/", "http://metadata/", "http://metadata.goog/",
    "http://instance-data/", "http://instance-data.ec2.internal./", "http://x.internal/",
    "ftp://example.com/", "file:///etc/passwd", "gopher://x/", "javascript:alert(1)",
    "http://user:pass@example.com/", "http://@example.com/", "http:///nohost", "http://:80/",
    "http://example.com:99999/", "http://exa mple.com/", "http://example.com/\r\nX: y",
    "http://exämple.com/", "", "http://[/", "http://[::1/x", "https://]x[/",
])
def test_bad_names_schemes_and_shapes_are_refused(url):
    with pytest.raises(UnsafeURL):
        check_url(url, resolve=public)


def test_localhost_is_refused_through_the_real_resolver():
    with pytest.raises(UnsafeURL, match="loopback"):
        check_url("http://localhost/")


@pytest.mark.parametrize("answers", [
    ["10.1.2.3"], [PUBLIC, "127.0.0.1"], ["127.0.0.1", PUBLIC], [PUBLIC, "::1"],
    ["fe80::1%eth0"], ["::ffff:10.0.0.1"],
])
def test_any_refused_dns_answer_refuses_the_url(answers):
    with pytest.raises(UnsafeURL) as e:
        check_url("https://hooks.example.com/x", resolve=lambda h, p: answers)
    assert "hooks.example.com" in str(e.value)


def test_refusal_says_why():
    with pytest.raises(UnsafeURL, match="link-local"):
        check_url("http://169.254.169.254/latest/meta-data")
    with pytest.raises(UnsafeURL, match="loopback.*NAT64"):
        check_url("http://[64:ff9b::7f00:1]/")
    with pytest.raises(UnsafeURL, match="scheme"):
        check_url("file:///etc/passwd")
    with pytest.raises(UnsafeURL, match="credentials"):
        check_url("http://user:pass@example.com/")


def test_unresolvable_host_is_refused():
    def fail(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(UnsafeURL, match="cannot resolve host"):
        check_url("http://nowhere.example/", resolve=fail)
    with pytest.raises(UnsafeURL, match="cannot resolve host"):
        check_url("http://nowhere.example/", resolve=lambda h, p: [])


def test_public_name_is_allowed_with_its_checked_address():
    seen = []

    def resolve(host, port):
        seen.append((host, port))
        return [PUBLIC, PUBLIC]

    t = check_url("https://Hooks.Example.com/in/bound?a=1&b=2#frag", resolve=resolve)
    assert t == Target("https", "hooks.example.com", 443, "/in/bound?a=1&b=2", PUBLIC)
    assert seen == [("hooks.example.com", 443)]
    t = check_url("http://hooks.example.com", resolve=resolve)
    assert (t.port, t.path_and_query, t.address) == (80, "/", PUBLIC)
    assert check_url("http://hooks.example.com:8080/h", resolve=resolve).port == 8080


def test_public_literals_and_embedded_public_addresses_are_allowed():
    assert check_url(f"http://{PUBLIC}/", resolve=no_dns).address == PUBLIC
    assert check_url(f"http://[::ffff:{PUBLIC}]/", resolve=no_dns).address == PUBLIC
    assert check_url("http://[64:ff9b::5db8:d70e]/", resolve=no_dns).address == "64:ff9b::5db8:d70e"
    assert check_url("http://[2606:4700::1111]/", resolve=no_dns).address == "2606:4700::1111"


def test_allow_networks_admit_loopback_but_nothing_else():
    allow = parse_networks("127.0.0.1/32")
    t = check_url("http://127.0.0.1:8123/hook", allow_networks=allow)
    assert (t.host, t.port, t.path_and_query, t.address) == ("127.0.0.1", 8123, "/hook", "127.0.0.1")
    for url in ("http://10.0.0.1/", "http://127.0.0.2/", "http://[::1]/", "http://169.254.169.254/"):
        with pytest.raises(UnsafeURL):
            check_url(url, allow_networks=allow)
    # A name is judged by its answers, against the same allow list.
    assert check_url("http://dev.test/", allow_networks=allow,
                     resolve=lambda h, p: ["127.0.0.1"]).address == "127.0.0.1"
    # Metadata names stay refused whatever the allow list says.
    with pytest.raises(UnsafeURL):
        check_url("http://metadata.google.internal/", allow_networks=parse_networks("0.0.0.0/0"),
                  resolve=lambda h, p: ["127.0.0.1"])


def test_parse_networks():
    assert parse_networks("") == []
    assert parse_networks(" , ") == []
    nets = parse_networks("127.0.0.1/32, ::1/128,10.0.0.0/8")
    assert [str(n) for n in nets] == ["127.0.0.1/32", "::1/128", "10.0.0.0/8"]
    with pytest.raises(ValueError, match="'10.0.0.0/33'"):
        parse_networks("127.0.0.1/32,10.0.0.0/33")
    with pytest.raises(ValueError, match="'localhost'"):
        parse_networks("localhost")


# ---- post() against real servers on 127.0.0.1 ----

class Receiver(http.server.ThreadingHTTPServer):
    """Records every request; answers with self.reply = (status, headers, body)."""

    def __init__(self):
        self.requests = []
        self.reply = (200, {"Content-Type": "text/plain", "X-Reply": "Yes"}, b"thanks")
        super().__init__(("127.0.0.1", 0), self.Handler)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.server.requests.append((self.command, self.path, dict(self.headers), body))
            status, headers, reply = self.server.reply
            self.send_response(status)
            for k, v in {**headers, "Content-Length": str(len(reply))}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(reply)

        do_GET = do_POST

        def log_message(self, *args):
            pass


@pytest.fixture
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def local_target(port, host="hooks.example.test", path="/hook?x=1", scheme="http"):
    # The name does not resolve anywhere: post() must use the address, never look the name up.
    return check_url(f"{scheme}://{host}:{port}{path}", allow_networks=parse_networks("127.0.0.1/32"),
                     resolve=lambda h, p: ["127.0.0.1"])


def test_post_delivers_body_and_headers_to_the_checked_address(receiver):
    port = receiver.server_address[1]
    resp = post(local_target(port), b'{"job": 1}',
                {"Content-Type": "application/json", "X-Inferq-Signature": "sha256=abc", "host": "evil"})
    assert (resp.status, resp.body) == (200, b"thanks")
    assert resp.headers["x-reply"] == "Yes" and resp.headers["content-type"] == "text/plain"
    [(method, path, headers, body)] = receiver.requests
    assert (method, path, body) == ("POST", "/hook?x=1", b'{"job": 1}')
    assert headers["Host"] == f"hooks.example.test:{port}"
    assert headers["X-Inferq-Signature"] == "sha256=abc"
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Length"] == "10"


def test_post_does_not_follow_redirects(receiver):
    receiver.reply = (302, {"Location": "http://169.254.169.254/"}, b"")
    resp = post(local_target(receiver.server_address[1]), b"{}", {})
    assert resp.status == 302
    assert resp.headers["location"] == "http://169.254.169.254/"
    assert len(receiver.requests) == 1


def test_post_reads_at_most_64_kib(receiver):
    receiver.reply = (200, {}, b"x" * 200_000)
    resp = post(local_target(receiver.server_address[1]), b"{}", {})
    assert resp.body == b"x" * 65536


def test_post_times_out_on_a_server_that_never_answers():
    listener = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody answers
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            post(local_target(listener.getsockname()[1]), b"{}", {}, connect_timeout_s=0.5,
                 total_timeout_s=0.5)
        assert time.monotonic() - start < 5
    finally:
        listener.close()


def test_total_deadline_holds_against_a_slow_drip():
    """A server sending a byte at a time never trips a per-read timeout; the total deadline must."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            while not stop.is_set():
                try:
                    conn.sendall(b"x")
                except OSError:
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            post(local_target(listener.getsockname()[1]), b"{}", {}, connect_timeout_s=0.5,
                 total_timeout_s=0.5)
        assert time.monotonic() - start < 5
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_post_to_a_closed_port_is_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        post(local_target(port), b"{}", {}, connect_timeout_s=0.5, total_timeout_s=0.5)


def test_https_to_a_plain_http_server_fails_as_an_oserror(receiver):
    with pytest.raises(OSError):
        post(local_target(receiver.server_address[1], scheme="https"), b"{}", {},
             connect_timeout_s=0.5, total_timeout_s=2)
