"""An MLLP listener for HL7 v2 device gateways: every frame answered on its socket, after the consumer stored it.

Framing is a small sans-IO state machine rather than python-hl7's `hl7.mllp` reader: that reader clears its buffer
on an oversized frame (losing the next frame's start), raises on bytes before the start block instead of skipping
them, and cannot answer an oversized frame with its control id. Parsing stays with python-hl7 in the skill.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from skills.core.skill import ConsumerFunc, Outcome

log = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
_HEAD_BYTES = 2048  # kept from an oversized frame to find its MSH-10 for the NAK
_READ_SIZE = 64 * 1024
_HL7_ERRORS = {
    "missing": "101^Required field missing^HL70357",
    "invalid": "102^Data type error^HL70357",
    "unsupported": "200^Unsupported message type^HL70357",
    "internal": "207^Application internal error^HL70357",
}


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete MLLP frame's payload (without the start and end blocks)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Oversized:
    """A frame over the limit: dropped, answered with a reject naming the limit."""

    head: bytes
    size: int


class MllpFramer:
    """Turns a byte stream into frames: split reads, several frames per read, junk before a start block, oversize."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.discarded = 0  # bytes outside any frame (noise, a sender restarting mid-frame)
        self._buffer = bytearray()
        self._in_frame = False
        self._skipping = False  # inside an oversized frame: drop until its end block
        self._head = b""
        self._size = 0

    def feed(self, data: bytes) -> list[Frame | Oversized]:
        """Add bytes read from the socket; return the frames they completed, in order."""
        self._buffer += data
        events: list[Frame | Oversized] = []
        buffer = self._buffer
        while buffer:
            if not self._in_frame:
                start = buffer.find(START_BLOCK)
                if start < 0:
                    self.discarded += len(buffer)
                    buffer.clear()
                    break
                self.discarded += start
                del buffer[: start + 1]
                self._in_frame = True
                continue
            end = buffer.find(END_BLOCK)
            restart = buffer.find(START_BLOCK)
            if restart >= 0 and (end < 0 or restart < end) and not self._skipping:
                self.discarded += restart + 1  # a new start block inside a frame: the sender gave up on the old one
                del buffer[: restart + 1]
                continue
            if self._skipping:
                if end < 0:
                    keep = 1 if buffer.endswith(b"\x1c") else 0  # the end block may be split over two reads
                    self._size += len(buffer) - keep
                    del buffer[: len(buffer) - keep]
                    break
                self._size += end
                del buffer[: end + len(END_BLOCK)]
                events.append(Oversized(self._head, self._size))
                self._in_frame = self._skipping = False
                continue
            if end < 0:
                if len(buffer) > self.max_bytes:
                    keep = 1 if buffer.endswith(b"\x1c") else 0
                    self._head = bytes(buffer[:_HEAD_BYTES])
                    self._size = len(buffer) - keep
                    del buffer[: len(buffer) - keep]
                    self._skipping = True
                break
            if end > self.max_bytes:
                events.append(Oversized(bytes(buffer[:_HEAD_BYTES]), end))
            else:
                events.append(Frame(bytes(buffer[:end])))
            del buffer[: end + len(END_BLOCK)]
            self._in_frame = False
        return events


def frame(payload: bytes) -> bytes:
    """Wrap a payload in MLLP start and end blocks."""
    return START_BLOCK + payload + END_BLOCK


def decode(data: bytes) -> str:
    """HL7 text: UTF-8 when it is, else ISO 8859-1 (which decodes any byte, as many older gateways send)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


_CONTROL = re.compile(r"[\x00-\x1f]")


def _escape(text: str) -> str:
    """HL7 escape sequences for the delimiters, so a reason can never break the ACK's structure."""
    escaped = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    return _CONTROL.sub(" ", escaped.replace("&", "\\T\\").replace("~", "\\R\\"))


def _clean(field: str) -> str:
    return _CONTROL.sub("", field)[:200]


def _location(field: str) -> str:
    """ "OBR-29" -> "OBR^1^29" (ERR-2, error location)."""
    segment, _, position = field.partition("-")
    if not re.fullmatch(r"[A-Z][A-Z0-9]{2}", segment):
        return ""
    return f"{segment}^1^{position}" if position.isdigit() else f"{segment}^1"


def build_ack(message: str, code: str, outcome: Outcome | None = None, *, application: str = "WARDLINE") -> str:
    """An accept ACK (MSA|CA/CE/CR|<MSH-10>), plus an ERR segment saying what was wrong when it is not CA."""
    first = message.split("\r", 1)[0].split("\n", 1)[0]
    fields = first.split("|") if first.startswith("MSH|") else ["MSH", "^~\\&"]

    def get(index: int) -> str:  # MSH-n is fields[n - 1]: MSH-1 is the separator itself
        return _clean(fields[index - 1]) if len(fields) >= index else ""

    trigger = get(9).split("^")[1] if len(get(9).split("^")) > 1 else ""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    msh = "|".join(
        [
            "MSH",
            "^~\\&",
            application,
            get(6),
            get(3),
            get(4),
            now,
            "",
            f"ACK^{trigger}^ACK" if trigger else "ACK",
            uuid.uuid4().hex[:20],
            get(11) or "P",
            get(12) or "2.6",
        ]
    )
    segments = [msh, f"MSA|{code}|{get(10)}"]
    if outcome is not None and not outcome.accepted:
        error = _HL7_ERRORS[outcome.error or "internal"]
        reason = f"{outcome.field}: {outcome.reason}" if outcome.field else outcome.reason
        segments.append(f"ERR||{_location(outcome.field)}|{error}|E||||{_escape(reason)}")
    return "\r".join(segments) + "\r"


class MllpServer:
    """The asyncio MLLP listener; frames of one connection are answered in order, connections run side by side."""

    def __init__(
        self,
        consumer: ConsumerFunc | None,
        *,
        host: str,
        port: int,
        max_bytes: int,
        idle_timeout_s: float,
    ) -> None:
        self.consumer = consumer
        self.host = host
        self.port = port
        self.max_bytes = max_bytes
        self.idle_timeout_s = idle_timeout_s
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=_READ_SIZE)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("MLLP listener started", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            for task in list(self._connections):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        framer = MllpFramer(self.max_bytes)
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(_READ_SIZE), self.idle_timeout_s)
                except TimeoutError:
                    log.info("MLLP connection idle: closed", extra={"idle_s": self.idle_timeout_s})
                    break
                if not data:
                    break
                for event in framer.feed(data):
                    ack, outcome = await self._answer(event)
                    writer.write(frame(ack.encode("utf-8")))
                    await asyncio.wait_for(writer.drain(), self.idle_timeout_s)
                    if outcome is not None and outcome.after_reply is not None:
                        await outcome.after_reply()
        except (ConnectionError, TimeoutError):
            log.info("MLLP connection dropped")
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, event: Frame | Oversized) -> tuple[str, Outcome | None]:
        if isinstance(event, Oversized):
            head = decode(event.head)
            reason = f"the message is {event.size} bytes, over the limit of {self.max_bytes}"
            log.warning("MLLP frame over the size limit refused", extra={"bytes": event.size})
            return build_ack(head, "CR", Outcome.fail("internal", reason)), None
        text = decode(event.data)
        if self.consumer is None:
            outcome = Outcome.fail("unsupported", "no receiver for HL7 v2 messages is configured")
            return build_ack(text, "CR", outcome), None
        try:
            outcome = await self.consumer(text)
        except Exception:  # a consumer bug must cost one NAK (the gateway resends), never the connection
            log.exception("HL7 consumer failed")
            outcome = Outcome.fail("internal", "the message could not be processed; send it again")
        if outcome.accepted:
            return build_ack(text, "CA"), outcome
        code = "CR" if outcome.error == "unsupported" else "CE"
        log.info("HL7 message refused", extra={"error": outcome.error, "field": outcome.field})
        return build_ack(text, code, outcome), outcome
