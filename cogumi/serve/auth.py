"""Bearer-key authentication and per-key rate limits.

Keys come from ``COGUMI_API_KEY`` (comma-separated) and/or ``serve.api_keys_file``.
Only their SHA-256 digests leave the process that read them (deployment arguments,
logs and metrics see digests or short key ids, never a key). A presented key is
hashed and compared with every stored digest using :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
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


@dataclass
class RateLimiter:
    """Token bucket per caller: ``burst`` requests at once, refilled at ``per_minute``.

    Buckets live in one router replica; with N replicas a key may reach N times the rate.
    """

    per_minute: int
    burst: int
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
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
            b.tokens = min(float(self.burst), b.tokens + (now - b.stamp) * rate)
            b.stamp = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return 0.0
            return (1.0 - b.tokens) / rate
