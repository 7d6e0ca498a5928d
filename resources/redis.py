"""Redis and Redis Sentinel (redis-py), for the cache tier's health."""

from __future__ import annotations

import dagster as dg
import redis

from wpfarm_assets.core.errors import WpfarmError


class RedisError(WpfarmError):
    """A Redis or Sentinel server could not be reached or refused; the message says which."""


class RedisResource(dg.ConfigurableResource):
    """Password for the Redis servers (Sentinel needs none); addresses come from the cache config."""

    password: str | None = None
    timeout_seconds: float = 5

    def _client(self, address: str, password: str | None) -> redis.Redis:
        host, port = address.rsplit(":", 1)
        return redis.Redis(host=host, port=int(port), password=password, decode_responses=True,
                           socket_timeout=self.timeout_seconds, socket_connect_timeout=self.timeout_seconds)

    def replication(self, address: str) -> dict:
        """INFO replication of the server at host:port."""
        try:
            return self._client(address, self.password).info("replication")
        except redis.RedisError as exc:
            raise RedisError(f"Redis at {address}: {exc}") from None

    def sentinel_master(self, address: str, name: str) -> dict:
        """What the Sentinel at host:port knows of master `name` (SENTINEL MASTER)."""
        try:
            return self._client(address, None).sentinel_master(name)
        except redis.ResponseError as exc:
            raise RedisError(f"Sentinel at {address} does not know master {name!r}: {exc}") from None
        except redis.RedisError as exc:
            raise RedisError(f"Sentinel at {address}: {exc}") from None
