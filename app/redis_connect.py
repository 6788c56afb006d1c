"""One way to turn `REDIS_URL` into a client: plain, TLS (`rediss://`) or Sentinel.

    redis://[[user]:password@]host[:port][/db]            redis-py's own URL
    rediss://...?ssl_ca_certs=/path/ca.pem                 the same over TLS
    unix:///path/redis.sock?db=0                           a local socket
    redis+sentinel://[[user]:password@]h1:26379,h2:26379/SERVICE[/db]
    rediss+sentinel://...                                  Sentinel with TLS to sentinels and master

redis-py parses the first three itself (`Redis.from_url`, query options such as
`ssl_ca_certs` or `ssl_cert_reqs=none` included) but has no Sentinel URL: for that we
build `Sentinel([...]).master_for(SERVICE)`, which asks the sentinels for the current
master and follows a fail-over. The password in the URL is the master's; a sentinel
that needs its own is given `?sentinel_password=...`. `parse_redis_url` is pure, so the
URL rules are tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
DIRECT_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """A Sentinel-managed master, as named by a `redis+sentinel://` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    sentinel_password: str | None = None
    options: dict[str, str] = field(default_factory=dict)  # other query options, as given


def parse_redis_url(url: str) -> str | SentinelTarget:
    """The URL itself when redis-py reads it directly, else the Sentinel target.

    ValueError names what is wrong (never echoing a password).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in DIRECT_SCHEMES:
        return url
    if scheme not in SENTINEL_SCHEMES:
        raise ValueError(
            f"unsupported Redis URL scheme {scheme!r}: use redis://, rediss://, unix://, "
            "redis+sentinel:// or rediss+sentinel://"
        )
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels = tuple(_host_port(item) for item in hosts.split(",") if item)
    if not sentinels:
        raise ValueError("a Sentinel URL needs at least one host:port")
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError("a Sentinel URL's path is /SERVICE_NAME or /SERVICE_NAME/DB")
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise ValueError("the database in a Sentinel URL must be a number")
        db = int(path[1])
    username, password = _credentials(userinfo)
    options = dict(parse_qsl(parts.query))
    return SentinelTarget(
        sentinels=sentinels,
        service_name=path[0],
        db=db,
        username=username,
        password=password,
        tls=SENTINEL_SCHEMES[scheme],
        sentinel_password=options.pop("sentinel_password", None),
        options=options,
    )


def redis_from_url(url: str, **kwargs: Any) -> aioredis.Redis:
    """An asyncio client for any URL above; `kwargs` as for `redis.asyncio.Redis`."""
    target = parse_redis_url(url)
    if isinstance(target, str):
        return aioredis.Redis.from_url(target, **kwargs)
    connection: dict[str, Any] = {**target.options, **kwargs, "db": target.db}
    if target.username:
        connection["username"] = target.username
    if target.password:
        connection["password"] = target.password
    sentinel_kwargs: dict[str, Any] = {}
    for name in ("socket_timeout", "socket_connect_timeout"):
        if name in kwargs:
            sentinel_kwargs[name] = kwargs[name]
    if target.sentinel_password:
        sentinel_kwargs["password"] = target.sentinel_password
    if target.tls:
        connection["ssl"] = True
        sentinel_kwargs["ssl"] = True
        for name in ("ssl_ca_certs", "ssl_cert_reqs"):
            if name in connection:
                sentinel_kwargs[name] = connection[name]
    # redis-py's Sentinel is untyped; master_for returns the `redis_class` we pass.
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    client: aioredis.Redis = sentinel.master_for(
        target.service_name, redis_class=aioredis.Redis, **connection
    )
    return client


def _host_port(item: str) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, sep, port = item.rpartition(":")
        if not sep:
            host, port = item, ""
    if not host:
        raise ValueError(f"bad Sentinel host {item!r}")
    if port and not port.isdigit():
        raise ValueError(f"bad Sentinel port in {item!r}")
    return host, int(port) if port else DEFAULT_SENTINEL_PORT


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    user, sep, password = userinfo.partition(":")
    if not sep:  # "redis+sentinel://secret@host": a lone value is the password, as redis-py
        return None, unquote(user) or None
    return unquote(user) or None, unquote(password) or None
