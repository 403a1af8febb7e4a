"""SSRF guard for outgoing webhooks: vet a URL once, then connect only to the vetted address.

check_url() turns a client-supplied URL into a Target holding one checked IP address;
post() connects to exactly that address (no second DNS lookup, so DNS rebinding cannot
slip in), never follows redirects, and enforces a total deadline.
"""
import http.client
import io
import ipaddress
import re
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_RESPONSE_BYTES = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BLOCKED_NAMES = {"metadata", "metadata.google.internal", "metadata.goog", "instance-data"}
_HOST_CHARS = re.compile(r"[a-z0-9_.:-]+")
_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*")

# Explicit table, so the verdict does not depend on the Python version's ipaddress flags.
_BLOCKED = [(ipaddress.ip_network(net), why) for net, why in [
    ("0.0.0.0/8", "unspecified"), ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (carrier-grade NAT)"), ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local / cloud metadata"), ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"), ("192.0.2.0/24", "reserved"), ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"), ("198.18.0.0/15", "reserved"), ("198.51.100.0/24", "reserved"),
    ("203.0.113.0/24", "reserved"), ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"), ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible (deprecated)"), ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "reserved"), ("2001::/23", "reserved (incl. Teredo)"), ("2001:db8::/32", "reserved"),
    ("fc00::/7", "unique-local"), ("fe80::/10", "link-local"), ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
]]


class UnsafeURL(ValueError):
    """The webhook URL is refused; the message says why and is safe to show to API clients."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str            # as given in the URL, lowercased (no brackets for IPv6)
    port: int
    path_and_query: str
    address: str         # the one checked IP address post() connects to


@dataclass
class Response:
    status: int
    headers: dict        # lower-case keys
    body: bytes          # at most MAX_RESPONSE_BYTES


def parse_networks(value: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """'127.0.0.1/32,::1/128' -> networks; '' -> []; a bad entry -> ValueError naming it."""
    nets = []
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        try:
            nets.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as e:
            raise ValueError(f"invalid network {entry!r} in allow list: {e}") from None
    return nets


def _why_refused(ip) -> str | None:
    if ip.version == 6:
        # Forms that carry an IPv4 address are judged by it (the ipaddress flags call them all "reserved").
        if int(ip) >> 32 == 0x0064_ff9b_0000_0000_0000_0000:
            embedded, kind = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
        elif ip.sixtofour is not None:
            embedded, kind = ip.sixtofour, "6to4"
        else:
            embedded = None
        if embedded is not None:
            why = _why_refused(embedded)
            return f"{why}, {kind} form of {embedded}" if why else None
    for net, why in _BLOCKED:
        if ip in net:
            return why
    for flag in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved", "site_local"):
        if getattr(ip, "is_" + flag, False):
            return flag.replace("_", "-")
    return None if ip.is_global else "not globally routable"


def _default_resolve(host: str, port: int) -> list[str]:
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def check_url(url: str, allow_networks=(), resolve=None) -> Target:
    """Vet a webhook URL; return its Target or raise UnsafeURL.

    resolve(host, port) -> list of IP strings (default: getaddrinfo). Every resolved address must
    pass; an address inside allow_networks passes even if private/loopback (local development).
    """
    if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        raise UnsafeURL("webhook URL must be ASCII without spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. "http://[/": an unclosed IPv6 bracket
        raise UnsafeURL("webhook URL cannot be parsed") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise UnsafeURL(f"webhook URL scheme must be http or https, not {parts.scheme!r}")
    if "@" in parts.netloc:
        raise UnsafeURL("webhook URL must not contain credentials (user:pass@)")
    host = parts.hostname
    if not host:
        raise UnsafeURL("webhook URL has no host")
    if not _HOST_CHARS.fullmatch(host):
        raise UnsafeURL(f"webhook URL host {host!r} contains characters not allowed in a host name")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise UnsafeURL("webhook URL has an invalid port") from None
    name = host.rstrip(".")
    if name in _BLOCKED_NAMES or name.endswith(".internal"):
        raise UnsafeURL(f"webhook host {host!r} is a cloud metadata / internal name")

    # IP literals, including legacy decimal/octal/hex/short forms (inet_aton reads those the way
    # the OS would), are checked as the address they mean; only real names go to the resolver.
    verb = "is"
    try:
        addresses = [str(ipaddress.ip_address(name))]
    except ValueError:
        if _NUMERIC_HOST.fullmatch(name):
            try:
                addresses = [socket.inet_ntoa(socket.inet_aton(name))]
            except OSError:
                raise UnsafeURL(f"webhook host {host!r} is a malformed IP address") from None
        else:
            verb = "resolves to"
            try:
                addresses = list(dict.fromkeys((resolve or _default_resolve)(host, port)))
            except (OSError, UnicodeError):
                addresses = []
            if not addresses:
                raise UnsafeURL(f"cannot resolve host {host!r}")

    checked = []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise UnsafeURL(f"cannot resolve host {host!r} (bad address {text!r})") from None
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped  # ::ffff:a.b.c.d is just a.b.c.d: judge and connect as IPv4
        if not any(ip in net for net in allow_networks):
            why = _why_refused(ip)
            if why:
                raise UnsafeURL(f"webhook host {host!r} {verb} {ip}, which is refused ({why}); "
                                "a server operator can allow such networks with "
                                "INFERQ_WEBHOOK_ALLOW_NETWORKS")
        checked.append(str(ip))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, path, checked[0])


class _DeadlineSocket:
    """The socket as http.client sees it: every send/recv gets only the time left to the deadline."""

    def __init__(self, sock, deadline: float, total: float):
        self.sock, self.deadline, self.total = sock, deadline, total

    def arm(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"webhook delivery exceeded its total timeout of {self.total:g}s")
        self.sock.settimeout(left)

    def sendall(self, data):
        view = memoryview(data)
        while view:
            self.arm()
            view = view[self.sock.send(view):]

    def makefile(self, *args):
        outer = self

        class Raw(io.RawIOBase):
            def readable(self):
                return True

            def readinto(self, b):
                outer.arm()
                return outer.sock.recv_into(b)

        return io.BufferedReader(Raw())

    def close(self):
        pass  # post() closes the real socket; http.client must not close it under the response


def post(target: Target, body: bytes, headers: dict, connect_timeout_s=3.0, total_timeout_s=10.0) -> Response:
    """POST body to target.address; no redirects followed (a 3xx is returned as is).

    Raises TimeoutError (the same class as socket.timeout) when connecting takes longer than
    connect_timeout_s or the whole exchange longer than total_timeout_s; ssl.SSLError for TLS
    failures (certificate checked against target.host); ConnectionError for refused/reset
    connections and malformed HTTP responses. All of these are OSError subclasses.
    """
    deadline = time.monotonic() + total_timeout_s
    ip = ipaddress.ip_address(target.address)
    sock = socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(min(connect_timeout_s, total_timeout_s))
        sock.connect((target.address, target.port))
        if target.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(
                sock, server_hostname=target.host, do_handshake_on_connect=False)
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.do_handshake()
        host = f"[{target.host}]" if ":" in target.host else target.host
        if target.port != _DEFAULT_PORTS[target.scheme]:
            host += f":{target.port}"
        skip = {"host", "content-length", "connection", "transfer-encoding"}
        conn = http.client.HTTPConnection(target.address, target.port)
        conn.sock = _DeadlineSocket(sock, deadline, total_timeout_s)
        conn.request("POST", target.path_and_query, body=body, headers={
            **{k: v for k, v in headers.items() if k.lower() not in skip},
            "Host": host, "Connection": "close"})
        resp = conn.getresponse()
        data = resp.read(MAX_RESPONSE_BYTES)
        merged = {}
        for k, v in resp.getheaders():
            k = k.lower()
            merged[k] = f"{merged[k]}, {v}" if k in merged else v
        return Response(resp.status, merged, data)
    except http.client.HTTPException as e:  # bad status line, truncated body, ...
        raise ConnectionError(f"bad HTTP response from webhook receiver: {e!r}") from e
    finally:
        sock.close()
