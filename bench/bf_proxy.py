"""A TCP proxy in front of PostgreSQL whose every connection can be reset at once.

    python bench/bf_proxy.py LISTEN_PORT UPSTREAM_PORT

Forwards loopback ``LISTEN_PORT`` to loopback ``UPSTREAM_PORT`` byte for byte (unlike
``tests/integration/pg_proxy.py`` it does not read the protocol: it never needs to pick
one message). On SIGUSR1 it aborts every connection it carries, both sides, as a network
failure would (the clients see a reset mid-query, mid-commit or idle in their pools);
new connections are accepted as before. While the server is down, a connection is
accepted and closed at once, as a refused connection would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys


class Proxy:
    """The forwarding and the set of live connections."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.live: set[asyncio.StreamWriter] = set()
        self.dropped = 0

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.transport.abort()
            return
        pair = {client_writer, server_writer}
        self.live |= pair
        try:
            await asyncio.gather(self.pump(client_reader, server_writer), self.pump(server_reader, client_writer))
        finally:
            self.live -= pair
            for writer in pair:
                writer.transport.abort()

    @staticmethod
    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        writer.transport.abort()

    def drop_all(self) -> None:
        for writer in list(self.live):
            writer.transport.abort()
        self.dropped += 1
        print(f"dropped every connection ({len(self.live)} sockets), drop {self.dropped}", flush=True)


async def main(listen_port: int, upstream_port: int) -> None:
    proxy = Proxy(upstream_port)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, proxy.drop_all)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", listen_port, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
