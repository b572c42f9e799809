"""The outbox behind TeamsNotifier, against the loopback fake Bot Connector, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.outbox import CANCELLED, DONE, PENDING, sends
from bot.teams.notifier import retry_after_s
from skills.core.fakes import StaticDirectory
from skills.core.ports import Priority, StaffMember, Unit
from skills.core.types import Reply
from tests.bot.outbox_support import (
    OffsetClock,
    Pipeline,
    channel_activity,
    personal_activity,
    pipeline,
    sql_store,
    until,
)
from tests.fakes.teams import FakeConnector, limit_breaches
from tests.postgres import PostgresServer

WARD = "19:7w-ward@thread.tacv2"
OTHER = "19:6e-ward@thread.tacv2"
GENERAL = "19:general@thread.tacv2"


@pytest.fixture(params=["sqlite", "postgresql"])
async def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("postgres_server")  # started (or configured) before sql_store needs it
    return str(request.param)


@pytest.fixture
async def line(kind: str, tmp_path: Path, connector: FakeConnector) -> AsyncIterator[Pipeline]:
    async with sql_store(kind, tmp_path) as store:
        p = pipeline(store)
        await p.book.remember(channel_activity(connector.url, GENERAL, channel_name="General"))  # first: fallback
        await p.book.remember(channel_activity(connector.url, WARD))
        await p.book.link("7W", WARD, by="test")
        yield p
        await p.close()


async def test_post_twice_with_one_key_sends_once(line: Pipeline, connector: FakeConnector) -> None:
    ref = await line.notifier.post("unit:7W", Reply(text="Bed 12 SpO2 low"), key="alarm-1", priority=Priority.URGENT)
    again = await line.notifier.post("unit:7W", Reply(text="Bed 12 SpO2 low (dup)"), key="alarm-1")
    assert ref == again == "alarm-1"
    [row] = await line.outbox.lookup(ref)  # committed before post returned
    assert row["state"] == PENDING
    line.worker.start()
    await until(lambda: len(connector.delivered()) == 1, what="the post")
    await until_done(line, ref)
    [sent] = connector.delivered()
    assert sent.conversation_id == WARD and sent.text == "Bed 12 SpO2 low"
    [row] = await line.outbox.lookup(ref)
    assert row["activity_id"] == sent.response_id and row["conversation_id"] == WARD
    await line.notifier.post("unit:7W", Reply(text="again, after it was sent"), key="alarm-1")
    line.worker.wake()
    assert len(connector.delivered()) == 1 and len(await line.outbox.lookup(ref)) == 1


async def until_done(line: Pipeline, ref: str) -> None:
    """Wait until every delivery of `ref` has left the queue (the worker recorded the send)."""
    for _ in range(1000):
        rows = await line.outbox.lookup(ref)
        if rows and all(r["state"] != PENDING for r in rows):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{ref} never finished")


async def test_update_before_the_first_send_merges_into_the_post(line: Pipeline, connector: FakeConnector) -> None:
    await line.notifier.post("unit:7W", Reply(text="alarm: started"), key="a-2")
    await line.notifier.update("a-2", Reply(text="alarm: ended"))
    line.worker.start()
    await until(lambda: len(connector.delivered()) == 1, what="the merged post")
    await until_done(line, "a-2")
    assert [s.text for s in connector.delivered()] == ["alarm: ended"]
    assert [s.method for s in connector.sent] == ["POST"]


async def test_update_and_delete_after_sending_change_the_message_in_place(
    line: Pipeline, connector: FakeConnector
) -> None:
    line.worker.start()
    await line.notifier.post("unit:7W", Reply(text="alarm: started"), key="a-3")
    await until(lambda: len(connector.delivered()) == 1, what="the post")
    await until_done(line, "a-3")
    posted = connector.delivered()[0].response_id
    await line.notifier.update("a-3", Reply(text="alarm: accepted by Kim"))
    await until(lambda: any(s.method == "PUT" for s in connector.sent), what="the update")
    [put] = [s for s in connector.sent if s.method == "PUT"]
    assert put.activity_id == posted and put.conversation_id == WARD and put.text == "alarm: accepted by Kim"
    await until_done(line, "a-3")
    await line.notifier.delete("a-3")
    await until(lambda: any(s.method == "DELETE" for s in connector.sent), what="the delete")
    [gone] = [s for s in connector.sent if s.method == "DELETE"]
    assert gone.activity_id == posted
    assert len(connector.delivered()) == 1


async def test_delete_before_sending_cancels(line: Pipeline, connector: FakeConnector) -> None:
    await line.notifier.post("unit:7W", Reply(text="reminder"), key="r-1")
    await line.notifier.delete("r-1")
    [row] = await line.outbox.lookup("r-1")
    assert row["state"] == CANCELLED
    line.worker.start()
    await line.notifier.post("unit:7W", Reply(text="marker"), key="r-2")
    await until(lambda: len(connector.delivered()) == 1, what="the marker post")
    assert [s.text for s in connector.delivered()] == ["marker"]


async def test_403_marks_the_link_broken_audits_and_reroutes_to_the_fallback(
    line: Pipeline, connector: FakeConnector
) -> None:
    connector.gone.add(WARD)  # the bot was removed from the 7W channel
    line.worker.start()
    await line.notifier.post("unit:7W", Reply(text="Bed 3 bradycardia"), key="a-4", priority=Priority.URGENT)
    await until(lambda: len(connector.delivered()) == 1, what="the re-routed post")
    [sent] = connector.delivered()
    assert sent.conversation_id == GENERAL
    assert "unrouted: unit 7W has no channel" in sent.text and "Bed 3 bradycardia" in sent.text
    record = await line.book.get(WARD)
    assert record is not None and record["broken"]["status"] == 403
    events = [e for _, e in await line.book.audit()]
    assert [e["event"] for e in events] == ["linked", "link_broken"]
    assert events[1]["units"] == ["7W"]
    await until_done(line, "a-4")
    [row] = await line.outbox.lookup("a-4")
    assert row["state"] == DONE and row["conversation_id"] == GENERAL


async def test_role_target_mentions_the_charge_nurses_and_messages_each_one(
    kind: str, tmp_path: Path, connector: FakeConnector
) -> None:
    directory = StaticDirectory(
        units=[Unit("7W", "Ward 7 West")],
        staff=[
            StaffMember("aad-park", "Park Charge", frozenset({"charge", "nurse"}), frozenset({"7W"})),
            StaffMember("aad-lee", "Lee Charge", frozenset({"charge"}), frozenset({"7W"})),
            StaffMember("aad-choi", "Choi Nurse", frozenset({"nurse"}), frozenset({"7W"})),
        ],
    )
    async with sql_store(kind, tmp_path) as store:
        line = pipeline(store, directory=directory)
        await line.book.remember(channel_activity(connector.url, WARD))
        await line.book.link("7W", WARD, by="test")
        await line.book.remember(personal_activity(connector.url, aad="aad-park", user_id="29:park", name="Park"))
        line.worker.start()
        await line.notifier.post("role:charge@7W", Reply(text="No one accepted bed 12"), key="esc-1")
        await until(lambda: len(connector.delivered()) == 2, what="the channel post and one 1:1")
        await line.close()
    by_conversation = {s.conversation_id: s for s in connector.delivered()}
    channel = by_conversation[WARD]
    assert "<at>Park Charge</at>" in channel.text and "<at>Lee Charge</at>" in channel.text
    mentions = [e for e in channel.body["entities"] if e["type"] == "mention"]
    assert {m["mentioned"]["id"] for m in mentions} == {"29:park", "aad-lee"}
    assert all(m["text"] in channel.text for m in mentions)
    assert by_conversation["a:1aad-park"].text == "No one accepted bed 12"  # Lee has no 1:1 chat with the bot


async def test_without_link_or_fallback_a_post_stays_queued_until_a_channel_exists(
    tmp_path: Path, connector: FakeConnector
) -> None:
    clock = OffsetClock()
    async with sql_store("sqlite", tmp_path) as store:
        line = pipeline(store, clock=clock)
        line.worker.start()
        await line.notifier.post("unit:9Z", Reply(text="경보: 9Z 병동 12번 침대"), key="k-1")
        await until_waiting(line)
        counts = await line.outbox.counts()
        assert counts["queued"] == 1 and counts["unrouted"] == 1
        assert await line.outbox.waiting_reasons() == {"unit 9Z has no channel and there is no fallback channel": 1}
        assert connector.delivered() == []
        await line.book.remember(channel_activity(connector.url, GENERAL, channel_name="General"))
        clock.advance(6)
        line.worker.wake()
        await until(lambda: len(connector.delivered()) == 1, what="the post, once a channel exists")
        await line.close()
    [sent] = connector.delivered()
    assert sent.conversation_id == GENERAL
    assert sent.text.startswith("_미배정: 9Z 병동에 연결된 채널이 없습니다_")


async def until_waiting(line: Pipeline) -> None:
    for _ in range(500):
        if (await line.outbox.counts())["unrouted"]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the post never reported that it waits for a channel")


async def test_a_429_storm_is_retried_after_retry_after_and_never_exceeds_the_teams_limits(
    tmp_path: Path, connector: FakeConnector, postgres_server: PostgresServer
) -> None:
    async with sql_store("postgresql", tmp_path) as store:
        line = pipeline(store)
        for channel in (WARD, OTHER):
            await line.book.remember(channel_activity(connector.url, channel))
        await line.book.link("7W", WARD, by="test")
        await line.book.link("6E", OTHER, by="test")
        connector.scripted[WARD] = [(429, 1.0)] * 3 + [(503, None), (429, 0.5)]
        for n in range(16):
            for unit in ("7W", "6E"):
                await line.notifier.post(f"unit:{unit}", Reply(text=f"{unit} post {n}"), key=f"{unit}-{n}")
        line.worker.start()
        await until(lambda: len(connector.delivered()) == 32, within=30, what="all 32 posts")
        await line.close()
    texts = [s.text for s in connector.delivered()]
    assert sorted(texts) == sorted(f"{u} post {n}" for n in range(16) for u in ("7W", "6E"))  # each exactly once
    times = connector.receive_times()
    for channel in (WARD, OTHER):
        assert limit_breaches(times[channel]) == [], channel
    refused = [s for s in connector.sent if s.conversation_id == WARD and s.status == 429]
    after = [s for s in connector.sent if s.conversation_id == WARD]
    for throttled in refused:
        asked = 1.0 if refused.index(throttled) < 3 else 0.5
        following = [s for s in after if s.received_at > throttled.received_at]
        if following:
            assert following[0].received_at - throttled.received_at >= asked - 0.02  # Retry-After was honoured


async def test_an_urgent_post_overtakes_queued_bulk_posts(tmp_path: Path, connector: FakeConnector) -> None:
    async with sql_store("sqlite", tmp_path) as store:
        line = pipeline(store)
        await line.book.remember(channel_activity(connector.url, WARD))
        await line.book.link("7W", WARD, by="test")
        for n in range(24):
            await line.notifier.post("unit:7W", Reply(text=f"bulletin {n}"), key=f"b-{n}", priority=Priority.BULK)
        line.worker.start()
        # The first 8 leave at once (Teams allows 8 in 2 s); then the conversation's queue waits for its limits.
        await until(lambda: len(connector.delivered()) >= 8, what="the first bulletins")
        seen = len(connector.delivered())
        await line.notifier.post("unit:7W", Reply(text="CODE BLUE bed 4"), key="u-1", priority=Priority.URGENT)
        await until(lambda: any(s.text == "CODE BLUE bed 4" for s in connector.delivered()), what="the alarm")
        position = [s.text for s in connector.delivered()].index("CODE BLUE bed 4")
        await line.close()
    # 16 bulletins were still queued: the alarm takes the next free slot.
    assert seen == 8 and position == seen, (position, seen)


async def test_a_permanent_refusal_marks_the_post_failed_and_later_posts_still_go(
    line: Pipeline, connector: FakeConnector
) -> None:
    connector.scripted[WARD] = [(400, None)]
    line.worker.start()
    await line.notifier.post("unit:7W", Reply(text="too big, say"), key="p-1")
    await until_done(line, "p-1")
    [row] = await line.outbox.lookup("p-1")
    assert row["state"] == "failed" and row["last_status"] == 400
    await line.notifier.post("unit:7W", Reply(text="next"), key="p-2")
    await until(lambda: len(connector.delivered()) == 1, what="the next post")
    assert (await line.outbox.counts())["failed"] == 1


async def test_prune_forgets_what_no_window_needs(tmp_path: Path, connector: FakeConnector) -> None:
    clock = OffsetClock()
    async with sql_store("sqlite", tmp_path) as store:
        line = pipeline(store, clock=clock)
        await line.book.remember(channel_activity(connector.url, WARD))
        await line.book.link("7W", WARD, by="test")
        line.worker.start()
        await line.notifier.post("unit:7W", Reply(text="old"), key="old")
        await until(lambda: len(connector.delivered()) == 1, what="the post")
        await until_done(line, "old")
        await line.close()
        clock.advance(8 * 24 * 3600)
        await line.outbox.prune()
        assert await line.outbox.lookup("old") == []
        async with store.engine.connect() as connection:
            assert (await connection.execute(select(func.count()).select_from(sends))).scalar_one() == 0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("0.5", 0.5), ("Mon, 30 Nov 2026 00:00:10 GMT", 10.0), ("soon", None), (None, None)],
)
def test_retry_after_reads_seconds_and_http_dates(header: str | None, seconds: float | None) -> None:
    now = datetime(2026, 11, 30, tzinfo=UTC).timestamp()
    assert retry_after_s(header, now=now) == seconds


async def test_a_conversation_target_goes_to_that_conversation_and_bad_targets_are_refused(
    line: Pipeline, connector: FakeConnector
) -> None:
    with pytest.raises(ValueError, match="unknown notifier target"):
        await line.notifier.post("ward:7W", Reply(text="x"), key="bad-1")
    with pytest.raises(ValueError, match="unknown notifier target"):
        await line.notifier.post("role:charge", Reply(text="x"), key="bad-2")
    assert await line.outbox.lookup("bad-1") == [] and await line.outbox.lookup("bad-2") == []
    line.worker.start()
    await line.notifier.post(f"conversation:{GENERAL}", Reply(text="deferred reply"), key="c-1")
    await until(lambda: len(connector.delivered()) == 1, what="the deferred reply")
    [sent] = connector.delivered()
    assert sent.conversation_id == GENERAL and sent.text == "deferred reply"
