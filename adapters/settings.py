"""Typed settings, read once from ``DAYBOOK_*`` environment variables.

Every variable is documented in README.md ("Configuration"). Unset database or Redis
URLs mean "use the embedded servers under ``DAYBOOK_HOME``".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
API_SERVERS = ("granian", "uvicorn")
"""HTTP servers ``daybook api`` can run the application on."""

COMMITTER_PARTITIONS_MAX = 4096
"""Partitions are claimed one advisory lock each: a bound keeps a tick's work small."""


class SettingsError(ValueError):
    """A ``DAYBOOK_*`` variable has a value that cannot be used."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Daybook configuration. Field ``x`` is read from ``DAYBOOK_X``."""

    database_url: str | None = None
    redis_url: str | None = None
    home: Path = Path(".daybook")
    host: str = "127.0.0.1"
    port: int = 8000
    admin_key: str | None = None
    log_level: str = "INFO"
    api_processes: int = 1
    api_server: str = "granian"
    worker_processes: int = 1
    worker_threads: int = 32
    database_pool_size: int = 10
    statement_timeout_ms: int = 10_000
    lock_timeout_ms: int = 5_000
    batch_size_max: int = 200
    worker_batch_size_max: int = 1_000
    batch_wait_ms: float = 2.0
    batch_queue_size_max: int = 10_000
    batch_merchant_queue_size_max: int = 1_000
    batch_conflict_retries_max: int = 3
    body_size_max_bytes: int = 1_048_576
    webhook_body_size_max_bytes: int = 262_144
    webhook_tolerance_seconds: int = 300
    rate_limit_per_minute: int = 6_000
    webhook_rate_limit_per_minute: int = 60_000
    idempotency_ttl_hours: int = 24
    idempotency_lock_seconds: float = 60.0
    projection_lag_max: int = 10_000
    projection_stall_seconds: float = 30.0
    read_wait_max_seconds: float = 5.0
    hold_expiry_interval_seconds: float = 5.0
    inbox_sweep_interval_seconds: float = 10.0
    drift_check_interval_seconds: float = 300.0
    demo_merchant: bool = True
    snapshots: bool = True
    audit_signing_key_path: str | None = None
    audit_digest_interval_seconds: float = 60.0
    audit_digest_interval_events: int = 10_000
    audit_verify_events_max: int = 20_000
    sse_connections_per_merchant_max: int = 100
    sse_connections_process_max: int = 2_000
    sse_buffer_events_max: int = 1_000
    sse_heartbeat_seconds: float = 15.0
    sse_poll_seconds: float = 1.0
    committer_routing: bool = True
    committer_partitions: int = 64
    committer_transport: str = "unix"
    committer_host: str = "127.0.0.1"
    committer_port: int = 0
    committer_advertised_host: str | None = None
    committer_forward_deadline_seconds: float = 10.0
    committer_ownership_interval_seconds: float = 0.25
    committer_forward_in_flight_max: int = 10_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Reads every field from ``DAYBOOK_<FIELD>``; unset fields keep their default."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(f"DAYBOOK_{field.name.upper()}")
            if raw is None or raw == "":
                continue
            values[field.name] = _parse(field.name, str(field.type), raw)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raises :class:`SettingsError` for values out of their range."""
        positive = (
            "port",
            "api_processes",
            "worker_processes",
            "worker_threads",
            "database_pool_size",
            "statement_timeout_ms",
            "lock_timeout_ms",
            "batch_size_max",
            "worker_batch_size_max",
            "batch_queue_size_max",
            "batch_merchant_queue_size_max",
            "body_size_max_bytes",
            "webhook_body_size_max_bytes",
            "rate_limit_per_minute",
            "webhook_rate_limit_per_minute",
            "idempotency_ttl_hours",
            "audit_digest_interval_events",
            "audit_verify_events_max",
            "sse_connections_per_merchant_max",
            "sse_connections_process_max",
            "sse_buffer_events_max",
            "committer_partitions",
            "committer_forward_in_flight_max",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"DAYBOOK_{name.upper()} must be positive")
        if self.audit_digest_interval_seconds <= 0:
            raise SettingsError("DAYBOOK_AUDIT_DIGEST_INTERVAL_SECONDS must be positive")
        if self.idempotency_lock_seconds <= 0:
            raise SettingsError("DAYBOOK_IDEMPOTENCY_LOCK_SECONDS must be positive")
        if not 0 < self.sse_heartbeat_seconds <= 15:
            raise SettingsError("DAYBOOK_SSE_HEARTBEAT_SECONDS must be above 0 and at most 15")
        if not 0 < self.sse_poll_seconds <= 60:
            raise SettingsError("DAYBOOK_SSE_POLL_SECONDS must be above 0 and at most 60")
        self._check_committer()
        if self.api_server not in API_SERVERS:
            raise SettingsError(f"DAYBOOK_API_SERVER must be one of {', '.join(API_SERVERS)}")
        if not 0 <= self.batch_wait_ms <= 1_000:
            raise SettingsError("DAYBOOK_BATCH_WAIT_MS must be between 0 and 1000")

    def _check_committer(self) -> None:
        if self.committer_partitions > COMMITTER_PARTITIONS_MAX:
            raise SettingsError(f"DAYBOOK_COMMITTER_PARTITIONS must be at most {COMMITTER_PARTITIONS_MAX}")
        if not 0 <= self.committer_port <= 65_535:
            raise SettingsError("DAYBOOK_COMMITTER_PORT must be between 0 and 65535")
        if self.committer_transport not in {"unix", "tcp"}:
            raise SettingsError("DAYBOOK_COMMITTER_TRANSPORT must be unix or tcp")
        if self.committer_forward_deadline_seconds <= 0:
            raise SettingsError("DAYBOOK_COMMITTER_FORWARD_DEADLINE_SECONDS must be positive")
        if not 0 < self.committer_ownership_interval_seconds <= 10:
            raise SettingsError("DAYBOOK_COMMITTER_OWNERSHIP_INTERVAL_SECONDS must be above 0 and at most 10")

    @property
    def embedded_database(self) -> bool:
        """True when no database URL is configured and the embedded PostgreSQL is used."""
        return not self.database_url

    @property
    def embedded_redis(self) -> bool:
        """True when no Redis URL is configured and the embedded Redis is used."""
        return not self.redis_url


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(raw)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "bool": _parse_bool,
    "Path": Path,
    "str": str,
    "str | None": str,
}


def _parse(name: str, type_name: str, raw: str) -> Any:
    parser = _PARSERS[type_name]
    try:
        return parser(raw)
    except ValueError as error:
        raise SettingsError(f"DAYBOOK_{name.upper()}={raw!r} is not a valid {type_name}") from error
