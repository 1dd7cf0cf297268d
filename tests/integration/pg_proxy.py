"""A TCP proxy in front of PostgreSQL that can lose one COMMIT acknowledgement.

Armed, it forwards a connection's traffic until the server confirms a ``COMMIT``, then
closes both sides instead of passing the confirmation on: the transaction is committed
on the server while the client sees a dropped connection, as after a network failure at
the worst moment.

It reads the server's side as PostgreSQL protocol messages (a type byte and a length),
and answers a client's SSL or GSS encryption request with "N" itself (PostgreSQL's
"not supported"), so that nothing it forwards is encrypted.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Any

from psycopg.conninfo import conninfo_to_dict

_ENCRYPTION_REQUESTS = {80877103, 80877104}  # SSLRequest, GSSENCRequest


class CommitDroppingProxy:
    """Forwards connections to the server of ``database_url``; see :meth:`arm`."""

    def __init__(self, database_url: str) -> None:
        info: dict[str, Any] = conninfo_to_dict(database_url)
        host, port = str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432)
        self._upstream: tuple[int, Any] = (
            (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}") if host.startswith("/") else (socket.AF_INET, (host, port))
        )
        self.dbname, self.user = str(info.get("dbname", "postgres")), str(info.get("user", "postgres"))
        self.password = str(info.get("password", ""))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._armed = threading.Event()
        self.dropped = threading.Event()
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="pg-proxy", daemon=True).start()

    def arm(self) -> None:
        """Drops the next connection whose server confirms a COMMIT, instead of confirming it."""
        self.dropped.clear()
        self._armed.set()

    def close(self) -> None:
        """Stops accepting and closes every forwarded connection."""
        self._stopping.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.socket(self._upstream[0], socket.SOCK_STREAM)
            server.connect(self._upstream[1])
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._client_to_server, args=(client, server), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(server, client), daemon=True).start()

    def _client_to_server(self, client: socket.socket, server: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:  # the encryption requests come first, each 8 bytes long
                head = _read_exactly(client, 8)
                length, code = struct.unpack("!II", head)
                if length != 8 or code not in _ENCRYPTION_REQUESTS:
                    server.sendall(head)
                    break
                client.sendall(b"N")
            while chunk := client.recv(65536):
                server.sendall(chunk)
        _close(client, server)

    def _server_to_client(self, server: socket.socket, client: socket.socket) -> None:
        pending = b""
        with contextlib.suppress(OSError):
            while chunk := server.recv(65536):
                pending += chunk
                forward = b""
                while len(pending) >= 5:
                    length = struct.unpack("!I", pending[1:5])[0]
                    if len(pending) < 1 + length:
                        break
                    message, pending = pending[: 1 + length], pending[1 + length :]
                    if self._armed.is_set() and message[:1] == b"C" and message[5:].startswith(b"COMMIT"):
                        self._armed.clear()
                        client.sendall(forward)
                        _close(client, server)
                        self.dropped.set()
                        return
                    forward += message
                client.sendall(forward)
        _close(client, server)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
