"""Forwarding between processes: the owner's listener and the senders' connections.

An address is ``unix:<path>`` (processes of one machine, the default) or
``tcp:<host>:<port>`` (several machines, see ``docs/SCALING.md``). One connection per
peer carries many commands at once, each frame naming its request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import secrets
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import msgspec

from adapters.committers import wire

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS: Final = 1.0
SOCKET_PATH_BYTES_MAX: Final = 100
"""Unix socket paths are limited to 107 bytes (sun_path)."""
WRITE_BUFFER_BYTES_HIGH: Final = 1024 * 1024
"""A connection whose unsent bytes pass this waits for them to drain."""


class PeerUnreachableError(Exception):
    """The owner could not be reached: the command was not sent (safe to send elsewhere)."""


class PeerLostError(Exception):
    """The connection ended after the command was sent: it may have run."""


Handler = Callable[[wire.Forward, Any], Awaitable[bytes]]
"""Runs a forwarded command and returns its answer frame."""


class CommitterListener:
    """Accepts forwarded commands for this process's committer."""

    def __init__(self, handler: Handler, decode_failed: Callable[[int, BaseException], bytes]) -> None:
        self._handler = handler
        self._decode_failed = decode_failed
        self._server: asyncio.AbstractServer | None = None
        self._path: Path | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start_unix(self, path: Path) -> str:
        """Listens on a unix socket at ``path`` (mode 600); returns its address."""
        _prepare_socket_path(path)  # a few system calls: not worth a thread
        self._server = await asyncio.start_unix_server(self._serve, path=str(path))
        os.chmod(path, 0o600)
        self._path = path
        return f"unix:{path}"

    async def start_tcp(self, host: str, port: int, advertised_host: str) -> str:
        """Listens on ``host:port`` (0: any free port); returns the address others dial."""
        self._server = await asyncio.start_server(self._serve, host=host, port=port)
        bound_port = self._server.sockets[0].getsockname()[1]
        return f"tcp:{advertised_host}:{bound_port}"

    async def stop(self) -> None:
        """Stops listening and ends the connections."""
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = asyncio.current_task()
        assert connection is not None
        self._connections.add(connection)
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                body = await wire.read_frame(reader)
                task = asyncio.create_task(self._answer(body, writer))
                running.add(task)
                task.add_done_callback(running.discard)
        except (asyncio.IncompleteReadError, ConnectionError, wire.FrameError):
            pass
        except asyncio.CancelledError:
            # Stopping: end quietly (the stream's callback reads the task's exception).
            for task in running:
                task.cancel()
        finally:
            self._connections.discard(connection)
            writer.close()

    async def _answer(self, body: bytes, writer: asyncio.StreamWriter) -> None:
        try:
            forward, command = wire.decode_forward(body)
        except Exception as error:
            request_id = _request_id_of(body)
            log.warning("refused a forwarded command that cannot be decoded: %s", error)
            if request_id is not None:
                await _write(writer, self._decode_failed(request_id, error))
            return
        try:
            frame = await self._handler(forward, command)
        except Exception as error:  # a bug: answered, so that the sender is not left waiting
            log.exception("a forwarded command failed outside its committer")
            frame = self._decode_failed(forward.id, error)
        await _write(writer, frame)


def _request_id_of(body: bytes) -> int | None:
    with contextlib.suppress(Exception):
        value = msgspec.msgpack.decode(body)
        if isinstance(value, list) and value and isinstance(value[0], int):
            return value[0]
    return None


async def _write(writer: asyncio.StreamWriter, frame: bytes) -> None:
    if writer.is_closing():
        return
    writer.write(frame)
    transport = writer.transport
    if transport.get_write_buffer_size() > WRITE_BUFFER_BYTES_HIGH:
        with contextlib.suppress(ConnectionError):
            await writer.drain()


class PeerConnection:
    """One connection to another process's committer, shared by every sender here."""

    def __init__(self, address: str, in_flight_max: int) -> None:
        self.address = address
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[wire.Answer]] = {}
        self._slots = asyncio.Semaphore(in_flight_max)
        self._connecting = asyncio.Lock()
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self.closed = False

    async def call(self, partition: int, epoch: int, command: Any, timeout_seconds: float) -> wire.Answer:
        """Sends ``command`` to the owner of ``partition`` at ``epoch``; returns its answer.

        Raises:
            PeerUnreachableError: not sent (no connection could be made).
            PeerLostError: sent, and the connection ended before the answer.
            TimeoutError: sent, and no answer within ``timeout_seconds``.
        """
        async with self._slots:
            writer = await self._connected()
            request_id = next(self._ids)
            frame = wire.encode_forward(request_id, partition, epoch, command)
            answer: asyncio.Future[wire.Answer] = asyncio.get_running_loop().create_future()
            self._pending[request_id] = answer
            try:
                writer.write(frame)
                if writer.transport.get_write_buffer_size() > WRITE_BUFFER_BYTES_HIGH:
                    await writer.drain()
                return await asyncio.wait_for(answer, timeout_seconds)
            except ConnectionError as error:
                raise PeerLostError(str(error)) from error
            finally:
                self._pending.pop(request_id, None)

    async def _connected(self) -> asyncio.StreamWriter:
        if self._writer is not None and not self._writer.is_closing():
            return self._writer
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            try:
                reader, writer = await asyncio.wait_for(_open(self.address), CONNECT_TIMEOUT_SECONDS)
            except (OSError, TimeoutError) as error:
                raise PeerUnreachableError(f"{self.address}: {error}") from error
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read_answers(reader, writer))
            return writer

    async def _read_answers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lost = PeerLostError(f"{self.address}: connection closed")
        try:
            while True:
                answer = wire.decode_answer(await wire.read_frame(reader))
                waiter = self._pending.get(answer.id)
                if waiter is not None and not waiter.done():
                    waiter.set_result(answer)
        except (asyncio.IncompleteReadError, ConnectionError, wire.FrameError, msgspec.DecodeError) as error:
            lost = PeerLostError(f"{self.address}: connection ended ({type(error).__name__})")
        except Exception as error:
            log.exception("reading answers from %s failed", self.address)
            lost = PeerLostError(f"{self.address}: {error!r}")
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            # Whatever ended the connection, nobody is left waiting on it.
            for waiter in list(self._pending.values()):
                if not waiter.done():
                    waiter.set_exception(lost)

    async def close(self) -> None:
        """Ends the connection; commands waiting on it get :class:`PeerLostError`."""
        self.closed = True
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader_task


async def _open(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    scheme, _, rest = address.partition(":")
    if scheme == "unix":
        return await asyncio.open_unix_connection(rest)
    if scheme == "tcp":
        host, _, port = rest.rpartition(":")
        return await asyncio.open_connection(host, int(port))
    msg = f"unknown committer address {address!r}"
    raise OSError(msg)


def socket_path(home: Path) -> Path:
    """A path of its own for this committer's socket: under ``home``, or a short temporary path.

    Named by the process id and a random part (two apps of one process each get one). A
    unix socket path is at most 107 bytes; a deep ``DAYBOOK_HOME`` falls back to the
    temporary directory (named after the home, so processes of one home stay together).
    """
    name = f"{os.getpid()}-{secrets.token_hex(4)}.sock"
    directory = home.resolve() / "committers"
    if len(os.fsencode(directory / name)) > SOCKET_PATH_BYTES_MAX:
        digest = hashlib.sha256(os.fsencode(home.resolve())).hexdigest()[:12]
        directory = Path(tempfile.gettempdir()) / f"daybook-{digest}"
    return directory / name


def _prepare_socket_path(path: Path) -> None:
    """Makes the directory, and removes the sockets that processes no longer running left."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in path.parent.glob("*.sock"):
        pid = stale.name.partition("-")[0]
        if pid.isdigit() and not _running(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
