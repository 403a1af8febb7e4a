"""API keys and tenants. With INFERQ_API_KEYS or INFERQ_ADMIN_KEYS set, every endpoint except
health, `/`, `/v1`, the console's files (and, by default, the API docs) needs
`Authorization: Bearer <key>`; the key names the tenant that owns the jobs it makes. With no
keys set the API is open (local development)."""
import hashlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass

from flask import current_app, g, request

from api.errors import ApiError
from jobs.settings import SettingsError

log = logging.getLogger("inferq.api")
TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_KEY_CHARS = 16
# How the keys in .env.example begin: an API that copied them would be open to anyone who
# read the example.
PLACEHOLDER = "change-me"
MAKE_A_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
BEARER = "`Authorization: Bearer <key>`"
RELOAD_CHECK_S = 2.0  # how often a key file is looked at for changes
# Endpoints any caller may reach: liveness and readiness probes carry no tenant data, nor do
# the index and the icon, nor do the console's files (its page asks for a key and sends it
# from the browser); the docs are open unless INFERQ_PUBLIC_DOCS=0.
HEALTH = {"health.healthz", "health.readyz", "kserve.live", "kserve.ready"}
CONSOLE = {"console.page", "console.asset", "console.examples", "console.example"}
PUBLIC = HEALTH | CONSOLE | {"index.index", "index.v1", "index.favicon"}
DOCS = {"openapi.document", "openapi.docs", "openapi.docs_asset"}


@dataclass(frozen=True)
class Caller:
    tenant: str  # "" when the API is open
    admin: bool


OPEN = Caller(tenant="", admin=True)


def _digest(key: str) -> bytes:
    # Keys are looked up by their hash, so lookup time says nothing about a key's characters.
    return hashlib.sha256(key.encode()).digest()


def parse_keys(spec: str, variable: str) -> dict[str, str]:
    """`key=tenant,key=tenant` or `@path` (one `key tenant` per line, `#` comments) -> {key:
    tenant}. Raises SettingsError naming `variable`."""
    spec = spec.strip()
    if not spec:
        return {}
    if spec.startswith("@"):
        path = spec[1:]
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise SettingsError(f"{variable}: cannot read key file {path!r}: {exc}") from None
        pairs = [(n, line.split("#", 1)[0].split()) for n, line in enumerate(lines, 1)]
        entries = [(f"{path} line {n}", words) for n, words in pairs if words]
    else:
        entries = [(f"entry {n}", item.strip().split("=", 1))
                   for n, item in enumerate(spec.split(","), 1) if item.strip()]
    keys = {}
    for where, words in entries:
        if len(words) != 2:
            raise SettingsError(f"{variable} {where}: expected a key and a tenant "
                                "(`key=tenant` pairs, or `key tenant` lines in a @file)")
        key, tenant = words[0].strip(), words[1].strip()
        if key.lower().startswith(PLACEHOLDER):
            raise SettingsError(f"{variable} {where}: {key!r} is the placeholder from "
                                f".env.example, not a key; make a key with: {MAKE_A_KEY}")
        if len(key) < MIN_KEY_CHARS or not key.isprintable() or " " in key:
            raise SettingsError(f"{variable} {where}: keys must be at least {MIN_KEY_CHARS} "
                                "printable characters without spaces")
        if not TENANT_RE.match(tenant):
            raise SettingsError(f"{variable} {where}: tenant {tenant!r} must be letters, "
                                "digits, '_', '.', '@', '-' (at most 64)")
        if keys.get(key, tenant) != tenant:
            raise SettingsError(f"{variable} {where}: this key is already given to tenant "
                                f"{keys[key]!r}")
        keys[key] = tenant
    return keys


class Keyring:
    """The keys the API accepts. A key file (`@path`) is read again when it changes, so keys
    can be added or revoked without a restart."""

    def __init__(self, api_keys: str, admin_keys: str):
        self._specs = (api_keys, admin_keys)
        self._lock = threading.Lock()
        self._checked = 0.0
        self._stamp = self._file_stamp()
        self._callers = self._load()  # raises SettingsError at start: a bad key is fatal then
        # On even with no key loaded (an empty key file): an API meant to be closed stays so.
        self.enabled = any(s.strip() for s in self._specs)

    def _files(self) -> list[str]:
        return [s.strip()[1:] for s in self._specs if s.strip().startswith("@")]

    def _file_stamp(self):
        stamp = []
        for path in self._files():
            try:
                st = os.stat(path)
                stamp.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                stamp.append(None)
        return stamp

    def _load(self) -> dict[bytes, Caller]:
        api = parse_keys(self._specs[0], "INFERQ_API_KEYS")
        admin = parse_keys(self._specs[1], "INFERQ_ADMIN_KEYS")
        for key in api.keys() & admin.keys():
            if api[key] != admin[key]:
                raise SettingsError("a key in both INFERQ_API_KEYS and INFERQ_ADMIN_KEYS names "
                                    f"two tenants ({api[key]!r}, {admin[key]!r})")
        callers = {_digest(k): Caller(t, False) for k, t in api.items()}
        callers.update({_digest(k): Caller(t, True) for k, t in admin.items()})
        return callers

    def _maybe_reload(self):
        now = time.monotonic()
        if not self._files() or now - self._checked < RELOAD_CHECK_S:
            return
        with self._lock:
            self._checked = now
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return
            self._stamp = stamp
            try:
                self._callers = self._load()
                log.info("API keys reloaded: %d keys", len(self._callers))
            except SettingsError as exc:  # keep serving with the keys we had
                log.error("API keys not reloaded, keeping the previous ones: %s", exc)

    def lookup(self, key: str) -> Caller | None:
        self._maybe_reload()
        return self._callers.get(_digest(key))


def authenticate():
    """before_request: who is calling. Sets g.caller, or answers 401."""
    ctx = current_app.extensions["inferq"]
    keyring = ctx.keyring
    if not keyring.enabled:
        g.caller = OPEN
        return
    if is_open(request.endpoint, ctx.settings):
        g.caller = None
        return
    caller = keyring.lookup(_bearer_key())
    if caller is None:
        raise ApiError(401, "invalid_key", "the API key is not valid (unknown or revoked)",
                       {"WWW-Authenticate": 'Bearer realm="inferq", error="invalid_token"'})
    g.caller = caller


def is_open(endpoint: str | None, settings) -> bool:
    """Whether the endpoint answers without a key."""
    return endpoint in PUBLIC or (settings.public_docs and endpoint in DOCS)


def _bearer_key() -> str:
    """The key of `Authorization: Bearer <key>`, or a 401 that says what was wrong with what
    came instead."""
    header = request.headers.get("Authorization", "").strip()
    scheme, _, key = header.partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return key.strip()
    if scheme.lower() == "bearer":
        why = "the Authorization header has no key after `Bearer`"
    elif header and not key:  # the key alone: never echoed
        why = "the Authorization header needs the word `Bearer` before the key"
    elif header:
        why = "the Authorization scheme must be Bearer"
    elif "X-API-Key" in request.headers:
        why = "the key goes in the Authorization header, not in X-API-Key"
    else:
        why = "this server needs an API key"
    raise ApiError(401, "unauthorized", f"{why}: send {BEARER}",
                   {"WWW-Authenticate": 'Bearer realm="inferq"'})


def caller() -> Caller:
    return g.get("caller") or OPEN


def tenant() -> str:
    return caller().tenant


def owner_fields() -> dict:
    """The job record fields that name its tenant (none on an open API)."""
    tenant_name = tenant()
    return {"tenant": tenant_name} if tenant_name else {}


def owns(record: dict | None) -> bool:
    """Whether the caller may see this job: its own tenant's jobs only."""
    return record is not None and record.get("tenant", "") == tenant()
