"""The MLLP framer and listener: framing edge cases, ACK contents, NAKs with ERR, idle timeouts, over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.ingress.mllp import END_BLOCK, START_BLOCK, Frame, MllpFramer, MllpServer, Oversized, build_ack, frame
from skills.core.skill import Outcome

DATA = Path(__file__).resolve().parents[2] / "data" / "hl7"
SPO2 = "\r".join((DATA / "ihe_e31_low_spo2_start.hl7").read_text(encoding="utf-8").splitlines())
PUMP = "\r".join((DATA / "ihe_e32_pump_occlusion_end.hl7").read_text(encoding="utf-8").splitlines())


def test_frame_split_over_reads() -> None:
    framer = MllpFramer(1024)
    data = frame(b"MSH|one")
    events = [e for byte in data for e in framer.feed(bytes([byte]))]
    assert events == [Frame(b"MSH|one")]


def test_several_frames_in_one_read_and_junk_before_a_start_block() -> None:
    framer = MllpFramer(1024)
    events = framer.feed(b"\r\nnoise" + frame(b"A") + b"xx" + frame(b"B") + frame(b"C")[:3])
    assert events == [Frame(b"A"), Frame(b"B")]
    assert framer.discarded == len(b"\r\nnoise") + 2
    assert framer.feed(frame(b"C")[3:]) == [Frame(b"C")]


def test_oversized_frame_is_reported_once_and_the_next_frame_survives() -> None:
    framer = MllpFramer(100)
    big = b"MSH|^~\\&|GW|F|||20260101||ORU^R40^ORU_R40|BIG-1|P|2.6" + b"x" * 500
    events = framer.feed(START_BLOCK + big[:300]) + framer.feed(big[300:] + b"\x1c") + framer.feed(b"\r" + frame(b"OK"))
    assert len(events) == 2
    oversized, after = events
    assert isinstance(oversized, Oversized) and oversized.size == len(big)
    assert b"BIG-1" in oversized.head
    assert after == Frame(b"OK")


def test_a_new_start_block_abandons_a_partial_frame() -> None:
    framer = MllpFramer(1024)
    assert framer.feed(START_BLOCK + b"half" + frame(b"whole")) == [Frame(b"whole")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=12), st.lists(st.binary(max_size=30), max_size=5))
def test_fuzz_framer_never_crashes_and_keeps_well_formed_frames(noise: list[bytes], payloads: list[bytes]) -> None:
    clean = [p.replace(b"\x0b", b"").replace(b"\x1c", b"") for p in payloads]
    stream = b"".join(
        n.replace(b"\x0b", b"") + frame(p) for n, p in zip(noise + [b""] * len(clean), clean, strict=False)
    )
    framer = MllpFramer(64)
    events: list[Frame | Oversized] = []
    for cut in range(0, len(stream), 7):
        events += framer.feed(stream[cut : cut + 7])
    assert events == [Frame(p) for p in clean]


def test_ack_echoes_the_control_id_and_swaps_the_applications() -> None:
    ack = build_ack(SPO2, "CA").split("\r")
    msh = ack[0].split("|")
    assert msh[2:6] == ["WARDLINE", "PHILIPS", "MINDRAY_EGATEWAY^00A037EB2175780F^EUI-64", "MINDRAY"]
    assert msh[8] == "ACK^R40^ACK"
    assert (msh[10], msh[11]) == ("P", "2.6")
    assert ack[1] == "MSA|CA|1"
    assert len(ack) == 3 and ack[2] == ""


def test_nak_carries_an_err_segment_with_location_code_and_escaped_reason() -> None:
    outcome = Outcome.fail("missing", "the alert identity | is required", "OBR-29")
    segments = build_ack(PUMP, "CE", outcome).split("\r")
    assert segments[1] == "MSA|CE|6346172846620706282"
    err = segments[2].split("|")
    assert err[0] == "ERR"
    assert err[2] == "OBR^1^29"
    assert err[3] == "101^Required field missing^HL70357"
    assert err[4] == "E"
    assert err[8] == "OBR-29: the alert identity \\F\\ is required"


def test_ack_for_garbage_still_has_msh_and_msa() -> None:
    segments = build_ack("not hl7 at all", "CE", Outcome.fail("missing", "no MSH", "MSH")).split("\r")
    assert segments[0].startswith("MSH|^~\\&|WARDLINE|")
    assert segments[1] == "MSA|CE|"


class Gateway:
    """A device gateway's side of an MLLP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    async def ack(self) -> list[str]:
        data = await asyncio.wait_for(self.reader.readuntil(END_BLOCK), 5)
        assert data.startswith(START_BLOCK)
        return data[1:-2].decode().rstrip("\r").split("\r")


@pytest.fixture
async def listener() -> AsyncIterator[tuple[MllpServer, list[str]]]:
    received: list[str] = []

    async def consumer(text: str) -> Outcome:
        if "BOOM" in text:
            raise RuntimeError("consumer bug")
        if "ORU^R40" not in text:
            return Outcome.fail("unsupported", "only ORU^R40 is handled", "MSH-9")
        received.append(text)
        return Outcome.ok()

    server = MllpServer(consumer, host="127.0.0.1", port=0, max_bytes=4096, idle_timeout_s=0.5)
    await server.start()
    yield server, received
    await server.stop()


async def connect(server: MllpServer) -> Gateway:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    return Gateway(reader, writer)


async def test_every_frame_is_answered_on_its_socket_in_order(listener: tuple[MllpServer, list[str]]) -> None:
    server, received = listener
    gateway = await connect(server)
    whole = frame(SPO2.encode()) + frame(PUMP.encode())
    await gateway.send(b"junk" + whole[:50])
    await gateway.send(whole[50:])
    assert (await gateway.ack())[1] == "MSA|CA|1"
    assert (await gateway.ack())[1] == "MSA|CA|6346172846620706282"
    assert received == [SPO2, PUMP]
    await gateway.close()


async def test_bad_messages_get_naks_and_the_connection_stays_open(listener: tuple[MllpServer, list[str]]) -> None:
    server, received = listener
    gateway = await connect(server)
    await gateway.send(frame(SPO2.replace("ORU^R40^ORU_R40", "ADT^A01").encode()))
    nak = await gateway.ack()
    assert nak[1] == "MSA|CR|1" and nak[2].startswith("ERR||MSH^1^9|200^")
    await gateway.send(frame(SPO2.replace("|1|P|", "|BOOM|P|").encode()))
    crashed = await gateway.ack()
    assert crashed[1] == "MSA|CE|BOOM" and "207^Application internal error" in crashed[2]
    await gateway.send(frame(b"MSH|^~\\&|GW|F|||20260101||ORU^R40^ORU_R40|BIG|P|2.6\r" + b"x" * 5000))
    big = await gateway.ack()
    assert big[1] == "MSA|CR|BIG" and "over the limit of 4096" in big[2]
    await gateway.send(frame(SPO2.encode()))
    assert (await gateway.ack())[1] == "MSA|CA|1"
    assert received == [SPO2]
    await gateway.close()


async def test_many_gateways_at_once(listener: tuple[MllpServer, list[str]]) -> None:
    server, received = listener
    gateways = [await connect(server) for _ in range(20)]
    for n, gateway in enumerate(gateways):
        await gateway.send(frame(SPO2.replace("|1|P|", f"|G{n}|P|").encode()))
    acks = await asyncio.gather(*(g.ack() for g in gateways))
    assert [a[1] for a in acks] == [f"MSA|CA|G{n}" for n in range(20)]
    assert len(received) == 20
    for gateway in gateways:
        await gateway.close()


async def test_idle_and_half_open_connections_are_closed(listener: tuple[MllpServer, list[str]]) -> None:
    server, _ = listener
    gateway = await connect(server)
    await gateway.send(START_BLOCK + b"MSH|half a frame, then silence")
    assert await asyncio.wait_for(gateway.reader.read(), 3) == b""  # the server closed it after 0.5 s idle
    assert server._connections == set()
    await gateway.close()


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=300), st.sampled_from([SPO2, PUMP]).flatmap(lambda t: st.just(t[: len(t) // 2]))))
def test_fuzz_every_message_gets_an_ack_or_a_nak(text: str) -> None:
    """Whatever arrives, the alerts consumer returns an outcome (never raises) and the answer is a CA, CE or CR."""
    from skills.alerts.desk import AlertDesk
    from skills.core.fakes import ManualClock, ManualTimers, MemoryStore, RecordingNotifier

    async def answer() -> str:
        desk = AlertDesk(MemoryStore(), ManualClock(), RecordingNotifier(), ManualTimers())
        outcome = await desk.receive_hl7(text)
        await desk.drain()
        await desk.stop()
        code = "CA" if outcome.accepted else "CR" if outcome.error == "unsupported" else "CE"
        return build_ack(text, code, outcome)

    segments = asyncio.run(answer()).split("\r")
    assert segments[0].startswith("MSH|^~\\&|WARDLINE|")
    assert segments[1].split("|")[0:2] in (["MSA", "CA"], ["MSA", "CE"], ["MSA", "CR"])
    if segments[1].startswith("MSA|C") and not segments[1].startswith("MSA|CA"):
        assert segments[2].startswith("ERR|")
