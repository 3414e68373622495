"""A small HTTP/1.1 proxy in front of LocalStack (or the broker) for the tests,
on plain asyncio in a thread of its own: it forwards each request unchanged
(the Host header too, so SigV4 signatures still verify), records what it saw,
and injects faults by rule: a reset mid-body, an error status, a delay, a
response cut short. One request per connection (``Connection: close``).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional
from urllib.parse import parse_qs, urlsplit


@dataclass
class Record:
    method: str
    path: str
    query: Dict[str, str]
    headers: Dict[str, str]
    started: float
    ended: float = 0.0
    status: int = 0  # 0: no answer (reset by a rule, or upstream failed)
    fault: str = ""

    @property
    def part(self) -> Optional[int]:
        """The part number of a part PUT (UploadPart), else None."""
        if self.method == "PUT" and "partNumber" in self.query and "uploadId" in self.query:
            return int(self.query["partNumber"])
        return None

    @property
    def is_download(self) -> bool:
        """A presigned GetObject."""
        return self.method == "GET" and "X-Amz-Signature" in self.query and "uploadId" not in self.query


@dataclass
class Rule:
    match: Callable[[Record], bool]
    action: str  # reset | status | delay | cut
    times: int = 1  # how many requests it applies to (-1: all)
    status: int = 503
    after: int = 256 * 1024  # reset/cut after this many body bytes
    seconds: float = 0.0
    retry_after: Optional[int] = None
    applied: int = field(default=0)


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        u = urlsplit(upstream)
        self.up_host = u.hostname or "127.0.0.1"
        self.up_port = u.port or 80
        self.records: List[Record] = []
        self.rules: List[Rule] = []
        self.inflight = 0
        self.max_inflight = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._server: Optional[asyncio.base_events.Server] = None

        def run() -> None:
            asyncio.set_event_loop(self._loop)

            async def start() -> None:
                self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
                started.set()

            self._loop.run_until_complete(start())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the fault proxy did not start")
        assert self._server is not None
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------ test side

    def add(self, match: Callable[[Record], bool], action: str, **kw: object) -> Rule:
        rule = Rule(match=match, action=action, **kw)  # type: ignore[arg-type]
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.records.clear()
            self.max_inflight = 0

    def part_puts(self) -> List[Record]:
        with self._lock:
            return [r for r in self.records if r.part is not None]

    def downloads(self) -> List[Record]:
        with self._lock:
            return [r for r in self.records if r.is_download]

    def wait_idle(self, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if self.inflight == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("the proxy still has requests in flight")

    def close(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    # ------------------------------------------------------------ proxy side

    def _take_rule(self, rec: Record) -> Optional[Rule]:
        with self._lock:
            for rule in self.rules:
                if rule.times != -1 and rule.applied >= rule.times:
                    continue
                if rule.match(rec):
                    rule.applied += 1
                    return rule
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: Dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        u = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
        rec = Record(method, u.path, query, headers, time.time())
        with self._lock:
            self.records.append(rec)
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            await self._serve(rec, head, reader, writer)
        except Exception as e:  # recorded for the assertion messages
            rec.fault = rec.fault or f"proxy: {type(e).__name__}: {e}"
        finally:
            rec.ended = time.time()
            with self._lock:
                self.inflight -= 1
            try:
                writer.close()
            except Exception:
                pass

    async def _serve(self, rec: Record, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rule = self._take_rule(rec)
        length = int(rec.headers.get("content-length", "0") or 0)
        if rule is not None and rule.action == "delay":
            rec.fault = f"delay {rule.seconds}"
            await asyncio.sleep(rule.seconds)
        if rule is not None and rule.action == "status":
            rec.fault = f"status {rule.status}"
            remaining = length
            while remaining > 0:
                remaining -= len(await reader.readexactly(min(65536, remaining)))
            body = (
                f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InjectedFault</Code>"
                f"<Message>status {rule.status} from the test proxy</Message></Error>"
            ).encode()
            extra = f"Retry-After: {rule.retry_after}\r\n" if rule.retry_after is not None else ""
            writer.write(
                f"HTTP/1.1 {rule.status} Injected\r\nContent-Type: application/xml\r\n"
                f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            rec.status = rule.status
            return
        if rule is not None and rule.action == "reset":
            rec.fault = f"reset after {rule.after}"
            remaining = min(rule.after, length)
            while remaining > 0:
                remaining -= len(await reader.readexactly(min(65536, remaining)))
            _reset(writer)
            return
        # Forward, with Connection: close on both sides.
        up_reader, up_writer = await asyncio.open_connection(self.up_host, self.up_port)
        try:
            out = [ln for ln in head.decode("latin-1").split("\r\n") if ln and not ln.lower().startswith("connection:")]
            up_writer.write(("\r\n".join(out) + "\r\nConnection: close\r\n\r\n").encode("latin-1"))

            async def pump_request() -> None:
                if "content-length" in rec.headers:
                    remaining = length
                    while remaining > 0:
                        chunk = await reader.read(min(65536, remaining))
                        if not chunk:
                            up_writer.close()  # the client went away mid-body
                            return
                        up_writer.write(chunk)
                        await up_writer.drain()
                        remaining -= len(chunk)
                elif rec.headers.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        chunk = await reader.read(65536)
                        if not chunk:
                            return
                        up_writer.write(chunk)
                        await up_writer.drain()

            pump = asyncio.ensure_future(pump_request())
            try:
                while True:
                    rhead = await up_reader.readuntil(b"\r\n\r\n")
                    status = int(rhead.split(b" ", 2)[1])
                    rlines = [ln for ln in rhead.decode("latin-1").split("\r\n") if ln and not ln.lower().startswith("connection:")]
                    writer.write(("\r\n".join(rlines) + "\r\nConnection: close\r\n\r\n").encode("latin-1"))
                    if status != 100:
                        break
                rec.status = status
                limit = rule.after if rule is not None and rule.action == "cut" else None
                if limit is not None:
                    rec.fault = f"cut after {limit}"
                sent = 0
                while True:
                    chunk = await up_reader.read(65536)
                    if not chunk:
                        break
                    if limit is not None and sent + len(chunk) >= limit:
                        writer.write(chunk[: limit - sent])
                        await writer.drain()
                        _reset(writer)
                        return
                    writer.write(chunk)
                    await writer.drain()
                    sent += len(chunk)
            finally:
                pump.cancel()
        finally:
            up_writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Closes the client's connection with a TCP reset."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()
