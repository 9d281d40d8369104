"""A TCP proxy we own, between orderbus and RabbitMQ or PostgreSQL.

``disable()`` resets every connection and refuses new ones (the service looks
down); ``enable()`` lets them through again; ``drop()`` resets the current
connections only (a network blip); ``stall()`` stops passing bytes on every
connection, old and new, without closing any (a network that silently drops
everything: no FIN, no reset), until ``unstall()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.enabled = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._flowing = asyncio.Event()
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._flowing.set()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> TcpProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(65536)
                if not data:
                    break
                await self._flowing.wait()  # stalled meanwhile: hold it, send nothing
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._abort(writer)

    def _abort(self, writer: asyncio.StreamWriter) -> None:
        self._writers.discard(writer)
        with contextlib.suppress(Exception):
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.enabled:
            self._abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._abort(writer)
            return
        self._writers.update({writer, up_writer})
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            self._abort(writer)

    def drop(self) -> None:
        self._loop.call_soon_threadsafe(self._drop_all)

    def stall(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def unstall(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def disable(self) -> None:
        self.enabled = False
        self.drop()

    def enable(self) -> None:
        self.enabled = True

    def stop(self) -> None:
        self.disable()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
