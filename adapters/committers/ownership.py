"""Which process owns which committer partition: session advisory locks and a directory.

Each API process keeps one connection of its own for ownership. On it, it holds a
shared advisory lock that makes it a *member* (PostgreSQL counts the members in
``pg_locks``; a process that dies leaves with its connection) and one exclusive
advisory lock per partition it owns. A thread ticks every ``interval_seconds``:

1. it reads the members, the partitions whose locks are held and the directory
   (``committer_partitions`` rows whose ``backend_pid`` still holds the lock), in one
   query; a failing connection loses every partition at once (the locks went with it)
   and the thread reconnects;
2. it claims free partitions up to its share (``ceil(partitions / members)``), and
   those a router found orphaned, bumping each one's epoch;
3. it releases partitions beyond its share once their commands in flight are
   answered (it stops taking new ones first), so a process that joins gets its share.

Routers read :attr:`owned` (partition → epoch) and :attr:`directory` (partition →
owner address and epoch), both replaced whole on change, from any thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Final

import psycopg

log = logging.getLogger(__name__)

PARTITION_LOCK_NAMESPACE: Final = 0x0DB0060
"""First key of every partition's advisory lock (the second is the partition)."""
MEMBER_LOCK_NAMESPACE: Final = 0x0DB0061
"""First key of the shared lock each member holds (the second is 0)."""
RELEASE_DRAIN_SECONDS_MAX: Final = 10.0
"""A partition being released waits at most this long for its commands in flight."""
CONNECT_TIMEOUT_SECONDS: Final = 5

_ADVISORY = (
    "locktype = 'advisory' AND granted AND objsubid = 2"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_MEMBERS_AND_HELD = f"""
SELECT (SELECT count(*) FROM pg_locks WHERE {_ADVISORY} AND classid = %(members)s::oid AND objid = 0),
       ARRAY(SELECT objid::bigint FROM pg_locks WHERE {_ADVISORY} AND classid = %(partitions)s::oid)
"""  # noqa: S608 - constants only
_LIVE_OWNERS = f"""
SELECT c.partition, c.address, c.epoch
  FROM committer_partitions c
  JOIN pg_locks l ON l.{_ADVISORY.replace(" AND ", " AND l.")} AND l.classid = %(partitions)s::oid
   AND l.objid = c.partition::oid AND l.pid = c.backend_pid
 WHERE c.partition < %(count)s
"""  # noqa: S608 - constants only
_CLAIM = """
INSERT INTO committer_partitions (partition, epoch, address, backend_pid)
VALUES (%(partition)s, 1, %(address)s, pg_backend_pid())
ON CONFLICT (partition) DO UPDATE
   SET epoch = committer_partitions.epoch + 1, address = EXCLUDED.address,
       backend_pid = EXCLUDED.backend_pid, claimed_at = now()
RETURNING epoch
"""


@dataclass(frozen=True, slots=True)
class Owner:
    """Where a partition's committer listens, and the epoch of its claim."""

    address: str
    epoch: int


class PartitionOwnership:
    """This process's partitions, kept by a thread on a connection of its own."""

    def __init__(
        self,
        database_url: str,
        *,
        partitions: int,
        address: str,
        interval_seconds: float = 0.25,
        claim: bool = True,
    ) -> None:
        """Prepares ownership of up to ``partitions`` partitions for a committer at ``address``.

        With ``claim=False`` the process only reads the directory (a client that forwards
        every command and owns nothing).
        """
        if partitions < 1:
            msg = f"partitions must be at least 1, not {partitions}"
            raise ValueError(msg)
        self.database_url = database_url
        self.partitions = partitions
        self.address = address
        self.interval_seconds = interval_seconds
        self.claim = claim
        self.owned: dict[int, int] = {}
        self.directory: dict[int, Owner] = {}
        self.in_flight = [0] * partitions
        """Commands of each partition this process is running; written by routers."""
        self.members = 0
        self._releasing: dict[int, float] = {}
        self._orphans: set[int] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._tick_waiters: list[Future[None]] = []
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def start(self, first_tick_timeout_seconds: float = 30.0) -> None:
        """Starts the thread and waits for its first tick (so a lone process owns all at once)."""
        first = self.next_tick()
        self._thread = threading.Thread(target=self._run, name="committer-ownership", daemon=True)
        self._thread.start()
        first.result(first_tick_timeout_seconds)

    def stop(self, timeout_seconds: float = 5.0) -> None:
        """Gives every partition up (closing the connection releases the locks)."""
        self.owned = {}
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)

    def next_tick(self) -> Future[None]:
        """A future resolved once a tick that starts after this call has ended."""
        future: Future[None] = Future()
        with self._lock:
            self._tick_waiters.append(future)
        self._wake.set()
        return future

    def orphaned(self, partition: int, address: str | None) -> Future[None]:
        """A router found ``partition`` without a reachable owner: forget it, try to claim it.

        ``address`` is the owner that could not be reached (``None``: the directory had
        none). Returns :meth:`next_tick`.
        """
        with self._lock:
            entry = self.directory.get(partition)
            if entry is not None and (address is None or entry.address == address):
                directory = dict(self.directory)
                del directory[partition]
                self.directory = directory
            if self.claim:
                self._orphans.add(partition)
        return self.next_tick()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            with self._lock:
                waiters, self._tick_waiters = self._tick_waiters, []
            self._wake.clear()
            try:
                self._tick()
            except (psycopg.Error, OSError) as error:
                self._lose_everything(error)
            finally:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
            elapsed = time.monotonic() - started
            self._wake.wait(max(0.0, self.interval_seconds - elapsed))
        self._close()

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(
                self.database_url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                application_name="daybook-committer-ownership",
                # A peer that vanished without closing is noticed within seconds.
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,
                # The server's side: a machine that died releases its locks within ~11 s.
                options=(
                    "-c statement_timeout=5000 -c lock_timeout=1000 "
                    "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3"
                ),
            )
            conn.execute("SELECT pg_advisory_lock_shared(%s, 0)", (MEMBER_LOCK_NAMESPACE,))
            self._conn = conn
        return self._conn

    def _tick(self) -> None:
        conn = self._connection()
        keys = {"members": MEMBER_LOCK_NAMESPACE, "partitions": PARTITION_LOCK_NAMESPACE, "count": self.partitions}
        row = conn.execute(_MEMBERS_AND_HELD, keys).fetchone()
        assert row is not None
        self.members = int(row[0])  # type: ignore[call-overload]
        held_set = {int(partition) for partition in row[1]}  # type: ignore[attr-defined]
        directory = {
            int(partition): Owner(str(address), int(epoch))  # type: ignore[call-overload]
            for partition, address, epoch in conn.execute(_LIVE_OWNERS, keys).fetchall()
        }
        owned = dict(self.owned)
        if self.claim:
            share = math.ceil(self.partitions / max(1, self.members))
            self._release_excess(conn, owned, share)
            self._claim_free(conn, owned, held_set, directory, share)
        self.owned = owned
        for partition, epoch in owned.items():
            directory[partition] = Owner(self.address, epoch)
        self.directory = directory

    def _claim_free(
        self,
        conn: psycopg.Connection[tuple[object, ...]],
        owned: dict[int, int],
        held: set[int],
        directory: dict[int, Owner],
        share: int,
    ) -> None:
        with self._lock:
            orphans, self._orphans = self._orphans, set()
        # Orphans first (a router waits on them), then in an order of this process's own,
        # so that processes starting together do not all race for the same partitions.
        offset = hash(self.address) % self.partitions
        order = sorted(orphans) + [(offset + step) % self.partitions for step in range(self.partitions)]
        for partition in order:
            wanted = partition in orphans or len(owned) < share
            if not wanted or partition in owned or partition in held or partition in self._releasing:
                continue
            locked = conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (PARTITION_LOCK_NAMESPACE, partition)
            ).fetchone()
            if not locked or not locked[0]:
                continue
            epoch_row = conn.execute(_CLAIM, {"partition": partition, "address": self.address}).fetchone()
            assert epoch_row is not None
            owned[partition] = int(epoch_row[0])  # type: ignore[call-overload]
            directory[partition] = Owner(self.address, owned[partition])
            log.info("claimed committer partition %d (epoch %d)", partition, owned[partition])

    def _release_excess(self, conn: psycopg.Connection[tuple[object, ...]], owned: dict[int, int], share: int) -> None:
        now = time.monotonic()
        excess = len(owned) - share
        if excess > 0:
            # Fenced first: no new command of these partitions runs here from now on.
            for partition in sorted(owned, key=lambda p: self.in_flight[p])[:excess]:
                del owned[partition]
                self._releasing[partition] = now
            self.owned = dict(owned)
        for partition, since in list(self._releasing.items()):
            if self.in_flight[partition] > 0 and now - since < RELEASE_DRAIN_SECONDS_MAX:
                continue
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (PARTITION_LOCK_NAMESPACE, partition))
            del self._releasing[partition]
            log.info("released committer partition %d to share with %d members", partition, self.members)

    def _lose_everything(self, error: BaseException) -> None:
        if self.owned or self._releasing:
            log.warning("lost the ownership connection; giving up %d partitions: %s", len(self.owned), error)
        self.owned = {}
        self._releasing = {}
        self.directory = {}
        self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                log.debug("closing the ownership connection failed", exc_info=True)
