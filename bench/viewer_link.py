"""A throttled TCP link on loopback for the viewer benchmark (``--link tcp``).

A proxy that passes the server's bytes to the browser no faster than N Mbit/s for all its
connections together (one shared token bucket) and adds a small delay to each connection and
to each request chunk. Unlike Chrome's DevTools emulation (``Network.emulateNetworkConditions``,
which throttles inside the browser after the bytes have arrived), the server's writes here meet
the link's back-pressure, as over a real network. Why it exists: with about 35 requests in flight
at once, Chrome's emulation has left every one of them without progress for 40-120 s
(docs/runtime-facts.md); the same first visit through this link did not stall.

Loopback only, one asyncio loop in a daemon thread; every copy loop ends when a side closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

CHUNK = 65536
BURST_S = 0.02  # a bucket this many seconds deep: asyncio's sleeps are too coarse for less


class _Bucket:
    """Bytes leave at ``rate`` bytes/s, shared first come, first served."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.free_at = time.monotonic()

    async def take(self, size: int) -> None:
        now = time.monotonic()
        self.free_at = max(self.free_at, now - BURST_S) + size / self.rate
        delay = self.free_at - now
        if delay > 0.002:
            await asyncio.sleep(delay)


class Link:
    """``Link(target_port, mbit, latency_ms)``; ``.port`` listens on 127.0.0.1; ``close()``."""

    def __init__(self, target_port: int, mbit: float, latency_ms: float = 2.0) -> None:
        self.target_port = target_port
        self.latency = latency_ms / 1000
        self._bucket = _Bucket(mbit * 125000)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True, name="viewer-link")
        self._thread.start()
        if not ready.wait(10) or self._server is None:
            raise RuntimeError("the throttled link did not start")
        self.port: int = int(self._server.sockets[0].getsockname()[1])

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        ready.set()
        self._loop.run_forever()
        # close() cancelled the connections' tasks: let them finish before the loop closes
        # (a task destroyed while pending makes asyncio print a warning per connection).
        pending = asyncio.all_tasks(self._loop)
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, throttled: bool) -> None:
        try:
            while data := await reader.read(CHUNK):
                if throttled:
                    await self._bucket.take(len(data))
                else:
                    await asyncio.sleep(self.latency / 2)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(self.latency)  # the connection's round trip
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._pipe(client_reader, server_writer, False),
                             self._pipe(server_reader, client_writer, True))

    def close(self) -> None:
        def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.call_soon(self._loop.stop)

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(timeout=10)
