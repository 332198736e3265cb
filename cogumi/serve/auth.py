"""Bearer-key authentication, per-key rate limits and a brake on key guessing.

Keys come from ``COGUMI_API_KEY`` (comma-separated) and/or ``serve.api_keys_file``.
Only their SHA-256 digests leave the process that read them (deployment arguments,
logs and metrics see digests or short key ids, never a key). A presented key is
hashed and compared with every stored digest using :func:`hmac.compare_digest`.
:class:`AuthFailures` makes a client that keeps presenting wrong keys wait, with
exponentially growing delays. Both per-client tables are bounded (LRU).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import ipaddress
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from cogumi.errors import ConfigError

KEY_ENV = "COGUMI_API_KEY"


def digest(key: str) -> str:
    """Hex SHA-256 of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(key_digest: str) -> str:
    """A short, non-secret name for a key (for logs and rate-limit buckets)."""
    return "key-" + key_digest[:8]


def load_key_digests(mode: str, keys_file: str | None, environ: dict[str, str] | None = None) -> list[str] | None:
    """The digests of the accepted keys, or None when the API is open.

    Setting ``COGUMI_API_KEY`` turns auth on whatever ``mode`` says; ``open-local``
    without keys is the only open configuration.

    Args:
        mode: ``keys`` or ``open-local``.
        keys_file: optional file of keys, one per line, ``#`` comments.
        environ: environment to read (default ``os.environ``).

    Raises:
        ConfigError: auth is required but there are no keys, or the file is unreadable.
    """
    env = os.environ if environ is None else environ
    keys = [k.strip() for k in env.get(KEY_ENV, "").split(",") if k.strip()]
    if keys_file:
        path = Path(keys_file)
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read the API keys file ({exc.strerror})", f"serve.api_keys_file={path}",
                              "create it with one key per line, or unset serve.api_keys_file") from None
        keys += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not keys:
        if mode == "open-local":
            return None
        raise ConfigError("serve.auth is 'keys' but no API key is configured", "serve.auth",
                          f"set {KEY_ENV}=key1,key2 (or serve.api_keys_file), or set serve.auth: open-local "
                          "for a local, unauthenticated endpoint")
    short = [k for k in keys if len(k) < 8]
    if short:
        raise ConfigError(f"{len(short)} API key(s) shorter than 8 characters", KEY_ENV,
                          "use long random keys, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return sorted({digest(k) for k in keys})


def check_bearer(header: str | None, digests: list[str]) -> str | None:
    """The matching key's digest for an ``Authorization`` header, or None.

    Every stored digest is compared (constant time each, no early exit).
    """
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    presented = digest(token.strip())
    match = None
    for d in digests:
        if hmac.compare_digest(presented, d):
            match = d
    return match


@dataclass
class _Bucket:
    tokens: float
    stamp: float


MAX_TRACKED_CLIENTS = 10_000


def client_key(host: str | None) -> str:
    """The bucket a client address falls in: the address, or its /64 for IPv6 (one host's usual share)."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass
class RateLimiter:
    """Token bucket per caller: ``burst`` requests at once, refilled at ``per_minute``.

    Buckets live in one router replica; with N replicas a key may reach N times the rate.
    At most ``max_callers`` buckets are kept; the least recently used goes first.
    """

    per_minute: int
    burst: int
    max_callers: int = MAX_TRACKED_CLIENTS
    _buckets: OrderedDict[str, _Bucket] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self, who: str, now: float | None = None) -> float:
        """Take one request from ``who``'s bucket.

        Returns:
            0.0 when allowed, else the seconds to wait before retrying.
        """
        now = time.monotonic() if now is None else now
        rate = self.per_minute / 60.0
        with self._lock:
            b = self._buckets.get(who)
            if b is None:
                b = self._buckets[who] = _Bucket(float(self.burst), now)
                while len(self._buckets) > self.max_callers:
                    self._buckets.popitem(last=False)
            self._buckets.move_to_end(who)
            b.tokens = min(float(self.burst), b.tokens + (now - b.stamp) * rate)
            b.stamp = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return 0.0
            return (1.0 - b.tokens) / rate


@dataclass
class _Failures:
    count: int
    last: float
    until: float = 0.0


@dataclass
class AuthFailures:
    """Per-client brake on wrong keys: after ``free`` failures, each further one blocks the client.

    The n-th failure past ``free`` blocks for ``base_delay_s * 2**(n-1)`` seconds (at most
    ``max_delay_s``); while blocked the client's keys are not even checked. A correct key
    or ``forget_after_s`` without failures clears the record. At most ``max_clients``
    records are kept (the least recently failed goes first), so memory stays bounded.
    """

    free: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 300.0
    forget_after_s: float = 600.0
    max_clients: int = MAX_TRACKED_CLIENTS
    _clients: OrderedDict[str, _Failures] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def blocked_for(self, client: str, now: float | None = None) -> float:
        """Seconds ``client`` must still wait (0.0: its key may be checked)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            rec = self._clients.get(client)
            return max(0.0, rec.until - now) if rec is not None else 0.0

    def failed(self, client: str, now: float | None = None) -> float:
        """Record one wrong key; returns the block it starts (0.0 while still free)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            rec = self._clients.pop(client, None)
            if rec is None or now - rec.last > self.forget_after_s:
                rec = _Failures(0, now)
            rec.count, rec.last = rec.count + 1, now
            over = rec.count - self.free
            delay = min(self.max_delay_s, self.base_delay_s * 2 ** min(over - 1, 62)) if over > 0 else 0.0
            rec.until = now + delay
            self._clients[client] = rec
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
            return delay

    def succeeded(self, client: str) -> None:
        """A correct key: forget the client's failures."""
        with self._lock:
            self._clients.pop(client, None)

    def __len__(self) -> int:
        return len(self._clients)
