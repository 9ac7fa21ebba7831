"""What stands between the API and strangers: API keys, per-client rate limits, response
headers, and error text that gives nothing away.

`create_app` wires these in as app-level guards that read each route's `opt`
(`{"access": "read" | "write"}`, `{"rate_limited": True}`), `add_security_headers` as a
before-send hook that sees every response (errors and 404s included), and `redact` on
every error `detail`.
"""

from __future__ import annotations

import hmac
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from litestar.datastructures import MutableScopeHeaders
from litestar.exceptions import (
    NotAuthorizedException,
    PermissionDeniedException,
    TooManyRequestsException,
)
from litestar.openapi.spec import SecurityScheme

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.connection import ASGIConnection
    from litestar.handlers import BaseRouteHandler
    from litestar.types import Message, Scope

    from service.settings import Settings

# -- API keys ---------------------------------------------------------------------------
SECURITY_SCHEMES = {
    "bearer": SecurityScheme(type="http", scheme="bearer",
                             description="`Authorization: Bearer <key>`"),
    "apiKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header",
                             description="`X-API-Key: <key>`"),
}
# Either header will do (OpenAPI: alternatives are separate requirement objects).
SECURITY_REQUIREMENT = [{"bearer": []}, {"apiKey": []}]
_BEARER = re.compile(r"bearer\s+(\S+)\s*", re.IGNORECASE)


def presented_key(connection: ASGIConnection) -> str | None:
    """The key a request carries in `Authorization: Bearer …` or `X-API-Key`, if any."""
    auth = connection.headers.get("authorization")
    if auth:
        m = _BEARER.fullmatch(auth)
        if m:
            return m.group(1)
    key = connection.headers.get("x-api-key")
    return key.strip() if key else None


def key_matches(presented: str, expected: str) -> bool:
    """Constant-time comparison, so response timing does not leak how much of a guess was right.

    Header values arrive as latin-1 text; compared as the bytes sent, a key with non-ASCII
    characters works when the client sends it UTF-8 encoded.
    """
    try:
        sent = presented.encode("latin-1")
    except UnicodeEncodeError:  # not from the wire (a direct call)
        sent = presented.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(sent, expected.encode("utf-8", "surrogateescape"))


@dataclass(frozen=True, slots=True)
class AccessRule:
    """Keys that open one group of routes; no keys means the group is open."""

    name: str  # "read" or "write", for the error message
    keys: tuple[str, ...]

    @property
    def required(self) -> bool:
        return bool(self.keys)

    def check(self, connection: ASGIConnection) -> None:
        """Raise 401 when no key is presented, 403 when the key is wrong."""
        if not self.keys:
            return
        key = presented_key(connection)
        if not key:
            raise NotAuthorizedException(
                f"{self.name} routes need an API key; send `Authorization: Bearer <key>` "
                "or `X-API-Key: <key>`",
                headers={"WWW-Authenticate": 'Bearer realm="article-qa"'})
        # Every key is compared (no early exit), so timing does not say which one was close.
        if not any([key_matches(key, k) for k in self.keys]):
            raise PermissionDeniedException(f"the API key is not valid for {self.name} routes")


def write_rule(settings: Settings) -> AccessRule:
    """POST/DELETE /documents: the write key, when one is set."""
    return AccessRule("write", (settings.api_key,) if settings.api_key else ())


def read_rule(settings: Settings) -> AccessRule:
    """Reading routes: the read key (or the write key), when a read key is set."""
    keys = tuple(k for k in (settings.read_api_key, settings.api_key) if k)
    return AccessRule("read", keys if settings.read_api_key else ())


def access_rules(settings: Settings) -> dict[str, AccessRule]:
    """The rule for each value of a route's `opt["access"]`."""
    return {"read": read_rule(settings), "write": write_rule(settings)}


def access_guard(rules: dict[str, AccessRule]):
    """A Litestar guard enforcing the rule named by the route's `opt["access"]`, if any."""
    def guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
        rule = rules.get(handler.opt.get("access", ""))
        if rule is not None:
            rule.check(connection)
    return guard


def document_access(app: Litestar, rules: dict[str, AccessRule]) -> None:
    """Declare in the OpenAPI document the key each route needs in this configuration.

    Routes are declared once at import time, keys come with the settings of each app;
    so the requirement is added to the generated document, and only where it is enforced.
    """
    if not any(r.required for r in rules.values()):
        return
    openapi = app.openapi_schema
    components = openapi.components
    components.security_schemes = {**(components.security_schemes or {}), **SECURITY_SCHEMES}
    for route in app.routes:
        item = (openapi.paths or {}).get(route.path_format)
        for handler in getattr(route, "route_handlers", ()):
            rule = rules.get(handler.opt.get("access", ""))
            if item is None or rule is None or not rule.required:
                continue
            for method in handler.http_methods:
                operation = getattr(item, method.lower(), None)
                if operation is not None:
                    operation.security = SECURITY_REQUIREMENT


def writes_are_open(settings: Settings) -> bool:
    return not settings.api_key


LOOPBACK = ("localhost", "127.0.0.1", "::1", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server reachable from this machine only."""
    import ipaddress

    host = host.strip("[]")
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- rate limiting -----------------------------------------------------------------------
_UNITS = {"second": 1.0, "sec": 1.0, "s": 1.0, "minute": 60.0, "min": 60.0, "m": 60.0,
          "hour": 3600.0, "h": 3600.0}
MAX_CLIENTS = 10_000  # buckets kept; the least recently seen client is forgotten first


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`per_second` sustained, up to `burst` at once; `per_second == 0` disables limiting."""

    per_second: float
    burst: int

    @classmethod
    def parse(cls, text: str, burst: int | None = None) -> RateLimit:
        """'600/minute', '10/second', '5000/hour'; '0' (or 'off') disables."""
        text = text.strip().lower()
        if text in ("0", "off", "none", ""):
            return cls(0.0, 0)
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*/\s*([a-z]+)", text)
        if not m or m.group(2) not in _UNITS:
            raise ValueError(f"rate limit {text!r} is not understood; write it like '600/minute', "
                             "'10/second' or '5000/hour', or '0' to disable")
        count = float(m.group(1))
        if count <= 0:
            return cls(0.0, 0)
        per_second = count / _UNITS[m.group(2)]
        if burst is not None and burst < 0:
            raise ValueError(f"rate burst of {burst} is negative; use 0 (= one period) or more")
        # Without a burst, a client may spend one period's allowance at once.
        return cls(per_second, burst if burst else max(1, math.ceil(count)))

    @property
    def enabled(self) -> bool:
        return self.per_second > 0


class RateLimiter:
    """A token bucket per client address; thread-safe; used as a Litestar guard."""

    def __init__(self, limit: RateLimit, clock=time.monotonic, max_clients: int = MAX_CLIENTS):
        self.limit = limit
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at
        self._lock = threading.Lock()

    def __deepcopy__(self, memo) -> RateLimiter:
        # Litestar deep-copies routers when registering them; the buckets must stay shared.
        return self

    def take(self, client: str) -> float:
        """Spend one token for `client`; returns 0, or the seconds to wait before retrying."""
        if not self.limit.enabled:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.pop(client, (float(self.limit.burst), now))
            tokens = min(float(self.limit.burst), tokens + (now - at) * self.limit.per_second)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.limit.per_second
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
        return wait

    def __call__(self, connection: ASGIConnection, handler: BaseRouteHandler) -> None:
        """Guard: 429 with Retry-After on routes marked `opt={"rate_limited": True}`."""
        if not handler.opt.get("rate_limited"):
            return
        client = connection.client.host if connection.client else "unknown"
        wait = self.take(client)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise TooManyRequestsException(
                f"too many requests from this client; retry in {seconds} s "
                f"(the limit is {self.limit.per_second * 60:g} per minute, "
                f"bursts of {self.limit.burst})",
                headers={"Retry-After": str(seconds)})


# -- response headers --------------------------------------------------------------------
# The chat page loads its script and stylesheet from /static and talks to the API only.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
# The Swagger page under /schema loads its viewer from a CDN; it keeps the other headers.
CSP_EXEMPT = "/schema"


async def add_security_headers(message: Message, scope: Scope) -> None:
    """Before-send hook: security headers on every HTTP response the app sends."""
    if message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    for name, value in HEADERS.items():
        if name not in headers:
            headers[name] = value
    if not scope.get("path", "").startswith(CSP_EXEMPT) and "content-security-policy" not in headers:
        headers["content-security-policy"] = CONTENT_SECURITY_POLICY


# -- error text --------------------------------------------------------------------------
# An absolute file path of two or more parts, not one of the API's own routes.
_PATH = re.compile(r"(?<![\w.:/~-])(?:~|/(?!(?:ask|search|chat|documents|health|schema|static)"
                   r"\b))[^\s'\"`,;:()<>]*/[^\s'\"`,;:()<>]+")
MAX_DETAIL = 1000


def redact(detail: str) -> str:
    """Error text safe to send to a stranger: no file paths, no traceback, bounded length."""
    text = _PATH.sub("<path>", detail)
    if "Traceback (most recent call last)" in text:
        text = text.split("Traceback (most recent call last)")[0].rstrip() or "request failed"
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL] + "…"
