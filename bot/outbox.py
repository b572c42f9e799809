"""The durable outbox: rows committed before `post` returns, drained by a worker with leases and shared rate limits.

Every delivery is one row (a `role:` post fans out into several, `part` 0..n of one `ref`). A worker claims due rows
(`SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas never take the same row; SQLite runs the same code
with one worker), holds them with a lease it renews while alive, and lets a `Courier` resolve and send them. Rows
are queued per conversation ("lane"): one send at a time per lane, the most urgent row first, each send reserved in
a ledger that every replica shares, so the Teams limits hold however many replicas send.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    func,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.storage import metadata  # one declared schema, checked against the migrations

log = logging.getLogger(__name__)

_ID = BigInteger().with_variant(Integer, "sqlite")

outbox = Table(
    "outbox",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("ref", String(512), nullable=False),
    Column("part", Integer, nullable=False),
    Column("target", String(512), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("action", String(8), nullable=False),  # post, update, delete: what the next send does
    Column("state", String(12), nullable=False),  # pending, done, cancelled, failed
    Column("payload", Text, nullable=False),
    Column("revision", Integer, nullable=False),  # +1 on every update/delete, so a send knows it went stale
    Column("conversation_id", String(512)),
    Column("activity_id", String(512)),
    Column("attempts", Integer, nullable=False),
    Column("not_before", Float(precision=53), nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", Float(precision=53)),
    Column("waiting", String(200)),  # why a due row cannot be routed yet (no channel, no fallback)
    Column("last_status", Integer),
    Column("created_at", Float(precision=53), nullable=False),
    Column("sent_at", Float(precision=53)),
    UniqueConstraint("ref", "part", name="uq_outbox_ref_part"),
    Index("ix_outbox_due", "state", "priority", "not_before", "id"),
    Index("ix_outbox_lease_owner", "lease_owner"),
)

sends = Table(
    "outbox_sends",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("lane", String(512), nullable=False),
    Column("at", Float(precision=53), nullable=False),
    Index("ix_outbox_sends_lane_at", "lane", "at"),
)

lanes = Table(
    "outbox_lanes",
    metadata,
    Column("lane", String(512), primary_key=True),
    Column("blocked_until", Float(precision=53), nullable=False),
)

GLOBAL_LANE = "*"
PENDING, DONE, CANCELLED, FAILED = "pending", "done", "cancelled", "failed"
POST, UPDATE, DELETE = "post", "update", "delete"


@dataclass(frozen=True, slots=True)
class RateRule:
    """At most `limit` sends in any window of `window_s` seconds."""

    limit: int
    window_s: float


# Teams, per bot per conversation (send or create): 7 per 1 s, 8 per 2 s, 60 per 30 s, 1,800 per hour.
TEAMS_CONVERSATION_LIMITS: tuple[RateRule, ...] = (
    RateRule(7, 1.0),
    RateRule(8, 2.0),
    RateRule(60, 30.0),
    RateRule(1800, 3600.0),
)


def global_limits(per_second: int) -> tuple[RateRule, ...]:
    """The bot-wide limit (Teams: about 50 requests per second per app and tenant)."""
    return (RateRule(per_second, 1.0),)


@dataclass(frozen=True, slots=True)
class Slot:
    """A granted send: its ledger rows, and the time they were reserved at (moved to when the send was done)."""

    lane: str
    at: float
    ledger_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One claimed row: what to send, where, and which revision of it."""

    id: int
    ref: str
    part: int
    target: str
    priority: int
    action: str
    payload: dict[str, Any]
    revision: int
    conversation_id: str | None
    activity_id: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a row goes: the lane (a Teams conversation id) and whatever the courier needs to send there."""

    lane: str
    detail: Any = None


@dataclass(frozen=True, slots=True)
class Hold:
    """The row cannot be routed now (no channel and no fallback): keep it queued and look again later."""

    reason: str
    retry_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Sent:
    activity_id: str | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure (429, 412, 5xx, timeout); `lane_wait` also pauses the whole conversation (429)."""

    status: int | None
    delay_s: float
    lane_wait: bool = False


@dataclass(frozen=True, slots=True)
class Gone:
    """403/404: the bot was removed or the conversation no longer exists."""

    status: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """A permanent refusal (400, 413, ...): retrying would not help."""

    status: int


SendResult = Sent | Retry | Gone | Rejected


class Courier(Protocol):
    """Resolves logical targets and performs sends; the outbox owns ordering, leases and limits."""

    async def resolve(self, item: OutboxItem) -> Destination | Hold: ...

    async def send(self, item: OutboxItem, destination: Destination) -> SendResult: ...

    async def gone(self, item: OutboxItem, destination: Destination, status: int) -> None:
        """Record that a conversation is gone (mark the link broken, audit it)."""
        ...

    async def delivered(self, item: OutboxItem, destination: Destination, activity_id: str | None) -> None:
        """Bookkeeping after a successful send (e.g. which record a message shows, for feedback)."""
        ...


def backoff_s(attempt: int, *, base: float = 0.5, cap: float = 60.0) -> float:
    """Exponential backoff with full jitter (as tenacity's wait_random_exponential): spreads retrying replicas."""
    return random.uniform(base, min(cap, base * 2 ** max(0, attempt - 1)))  # noqa: S311  (jitter, not crypto)


class Outbox:
    """The outbox table and the send ledger; every method is one short transaction."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        conversation_limits: Sequence[RateRule] = TEAMS_CONVERSATION_LIMITS,
        bot_limits: Sequence[RateRule] = global_limits(50),
        margin_s: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.conversation_limits = tuple(conversation_limits)
        self.bot_limits = tuple(bot_limits)
        self.margin_s = margin_s  # network jitter between reserving a slot and Teams receiving the send
        self.clock = clock
        self._postgres = engine.dialect.name == "postgresql"
        self._requests: list[tuple[int, str, asyncio.Future[Slot | float]]] = []  # lanes waiting for the next batch
        self._reserver: asyncio.Task[None] | None = None
        self._ledger_loaded = False
        self._known_lanes: set[str] = set()
        self._history = max(r.limit for r in (*self.conversation_limits, *self.bot_limits))
        self._recent: dict[str, list[float]] = {}  # this process's own sends per lane, sorted (part of the ledger)
        self._hold: dict[str, float] = {}  # lane -> no send before this time (from the ledger or a 429)

    def _insert(self, table: Table) -> Any:
        return pg_insert(table) if self._postgres else sqlite_insert(table)

    async def enqueue(self, ref: str, parts: Sequence[tuple[str, Mapping[str, Any]]], *, priority: int) -> bool:
        """Commit the deliveries of one post; False (and nothing written) when `ref` was posted before."""
        now = self.clock()
        rows = [
            {
                "ref": ref,
                "part": index,
                "target": target,
                "priority": int(priority),
                "action": POST,
                "state": PENDING,
                "payload": _dump(payload),
                "revision": 1,
                "attempts": 0,
                "not_before": now,
                "created_at": now,
            }
            for index, (target, payload) in enumerate(parts)
        ]
        async with self.engine.begin() as connection:
            exists = (await connection.execute(select(outbox.c.id).where(outbox.c.ref == ref).limit(1))).first()
            if exists is not None:
                return False
            statement = self._insert(outbox).on_conflict_do_nothing(index_elements=[outbox.c.ref, outbox.c.part])
            await connection.execute(statement, rows)
        return True

    async def _live(self, connection: AsyncConnection, ref: str, *columns: Any) -> list[tuple[Any, ...]]:
        """The deliveries of `ref` that are queued or already in Teams (not deletes), locked for this transaction."""
        query = select(*columns).where(
            and_(outbox.c.ref == ref, outbox.c.action != DELETE, outbox.c.state.in_((PENDING, DONE)))
        )
        return [tuple(row) for row in await connection.execute(_lock(query, self._postgres))]

    async def update(self, ref: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
        """Apply `change` to the payload of every live delivery of `ref`; unsent ones simply send the new payload."""
        now = self.clock()
        async with self.engine.begin() as connection:
            rows = await self._live(connection, ref, outbox.c.id, outbox.c.payload, outbox.c.activity_id)
            for row_id, payload, activity_id in rows:
                values: dict[str, Any] = {
                    "payload": _dump(change(json.loads(payload))),
                    "revision": outbox.c.revision + 1,
                }
                if activity_id is not None:  # already in Teams: the next send is an updateActivity
                    values.update(action=UPDATE, state=PENDING, not_before=now)
                await connection.execute(update(outbox).where(outbox.c.id == row_id).values(**values))
        return len(rows)

    async def delete(self, ref: str) -> int:
        """Cancel unsent deliveries of `ref` and queue a delete for the sent ones."""
        now = self.clock()
        async with self.engine.begin() as connection:
            rows = await self._live(connection, ref, outbox.c.id, outbox.c.activity_id, outbox.c.lease_until)
            for row_id, activity_id, lease_until in rows:
                in_flight = lease_until is not None and lease_until > now
                values: dict[str, Any] = {"action": DELETE, "revision": outbox.c.revision + 1}
                if activity_id is None and not in_flight:
                    values["state"] = CANCELLED
                else:  # sent, or being sent right now: delete once its activity id is known
                    values.update(state=PENDING, not_before=now)
                await connection.execute(update(outbox).where(outbox.c.id == row_id).values(**values))
        return len(rows)

    async def claim(
        self, owner: str, *, limit: int, lease_s: float, max_priority: int | None = None
    ) -> list[OutboxItem]:
        """Lease up to `limit` due rows, most urgent first; rows another replica holds are skipped, not waited for."""
        now = self.clock()
        due = and_(
            outbox.c.state == PENDING,
            outbox.c.not_before <= now,
            or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now),
        )
        if max_priority is not None:
            due = and_(due, outbox.c.priority <= max_priority)
        pick = select(outbox.c.id).where(due).order_by(outbox.c.priority, outbox.c.id).limit(limit)
        if self._postgres:
            pick = pick.with_for_update(skip_locked=True)  # rows another replica is claiming are skipped
        async with self.engine.begin() as connection:
            rows = (
                await connection.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(pick.scalar_subquery()))
                    .values(lease_owner=owner, lease_until=now + lease_s, attempts=outbox.c.attempts + 1)
                    .returning(*outbox.c)
                )
            ).all()
        items = [_item(row) for row in rows]
        items.sort(key=lambda i: (i.priority, i.id))
        return items

    async def renew(self, owner: str, *, lease_s: float) -> int:
        """Extend every lease this worker holds (it is alive); a dead worker's leases simply run out."""
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(outbox)
                .where(and_(outbox.c.lease_owner == owner, outbox.c.state == PENDING))
                .values(lease_until=self.clock() + lease_s)
            )
        return int(result.rowcount)

    async def release_all(self, owner: str) -> None:
        """Give back every row this worker holds (graceful stop), so another worker takes them at once."""
        async with self.engine.begin() as connection:
            await connection.execute(
                update(outbox)
                .where(and_(outbox.c.lease_owner == owner, outbox.c.state == PENDING))
                .values(lease_owner=None, lease_until=None)
            )

    async def release(
        self,
        item: OutboxItem,
        owner: str,
        *,
        delay_s: float,
        waiting: str | None = None,
        status: int | None = None,
        reroute: bool = False,
    ) -> None:
        """Put a held row back in the queue, due again after `delay_s`."""
        values: dict[str, Any] = {
            "lease_owner": None,
            "lease_until": None,
            "not_before": self.clock() + delay_s,
            "waiting": waiting,
        }
        if status is not None:
            values["last_status"] = status
        if reroute:
            values["conversation_id"] = None
        async with self.engine.begin() as connection:
            await connection.execute(
                update(outbox).where(and_(outbox.c.id == item.id, outbox.c.lease_owner == owner)).values(**values)
            )

    async def complete(self, item: OutboxItem, owner: str, *, conversation_id: str, activity_id: str | None) -> str:
        """Record a successful send; return the row's new state (pending again when it changed meanwhile)."""
        now = self.clock()
        kept_id = activity_id if item.action == POST else item.activity_id
        async with self.engine.begin() as connection:
            done = await connection.execute(
                update(outbox)
                .where(and_(outbox.c.id == item.id, outbox.c.lease_owner == owner, outbox.c.revision == item.revision))
                .values(
                    state=DONE,
                    lease_owner=None,
                    lease_until=None,
                    conversation_id=conversation_id,
                    activity_id=kept_id,
                    waiting=None,
                    last_status=None,
                    sent_at=now,
                )
            )
            if done.rowcount == 1:
                return DONE
            # Updated or deleted while the send was on the wire: send again as an update or a delete.
            row = (
                await connection.execute(_lock(select(outbox.c.action).where(outbox.c.id == item.id), self._postgres))
            ).first()
            if row is None:
                return DONE
            next_action = DELETE if row[0] == DELETE else UPDATE
            # Without an activity id there is nothing in Teams to change: a delete ends it, an update is moot.
            state = PENDING if kept_id is not None else (CANCELLED if next_action == DELETE else DONE)
            await connection.execute(
                update(outbox)
                .where(and_(outbox.c.id == item.id, outbox.c.lease_owner == owner))
                .values(
                    state=state,
                    action=next_action,
                    lease_owner=None,
                    lease_until=None,
                    conversation_id=conversation_id,
                    activity_id=kept_id,
                    not_before=now,
                    sent_at=now,
                )
            )
            return state

    async def finish(self, item: OutboxItem, owner: str, *, state: str, status: int | None) -> None:
        """End a row without a (successful) send: failed for good, or nothing left to change in Teams."""
        async with self.engine.begin() as connection:
            await connection.execute(
                update(outbox)
                .where(and_(outbox.c.id == item.id, outbox.c.lease_owner == owner))
                .values(state=state, lease_owner=None, lease_until=None, last_status=status, waiting=None)
            )

    async def block_lane(self, lane: str, until: float) -> None:
        """Pause every send to a conversation (Teams answered 429 with Retry-After)."""
        async with self.engine.begin() as connection:
            await self._ensure_lanes(connection, [lane])
            await connection.execute(
                update(lanes)
                .where(and_(lanes.c.lane == lane, lanes.c.blocked_until < until))
                .values(blocked_until=until)
            )

    async def reserve(self, lane: str, priority: int = 0) -> Slot | float:
        """Take a send slot in `lane` and the bot-wide lane, or return how long to wait (nothing taken then).

        What this process already knows (its own sends, waits the ledger gave it) answers "wait" without a database
        round trip. Otherwise the request joins the next batch: one transaction locks the lanes' rows (in one order,
        so replicas cannot deadlock), reads the shared ledger and writes the granted slots, the most urgent first;
        however many replicas send, the limits hold as Teams counts them.
        """
        known = self._known_wait(lane, self.clock())
        if known > 0:
            return known
        future: asyncio.Future[Slot | float] = asyncio.get_running_loop().create_future()
        self._requests.append((priority, lane, future))
        if self._reserver is None or self._reserver.done():
            self._reserver = asyncio.create_task(self._reserve_batches())
        return await future

    async def _reserve_batches(self) -> None:
        while self._requests:
            batch, self._requests = self._requests, []
            batch.sort(key=lambda request: request[0])
            try:
                waits = await self._reserve_many([lane for _, lane, _ in batch])
            except Exception as error:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, _, future), wait in zip(batch, waits, strict=True):
                if not future.done():
                    future.set_result(wait)

    async def _reserve_many(self, wanted: list[str]) -> list[Slot | float]:
        if not self._postgres:
            return await self._reserve_in_memory(wanted)
        keys = sorted({GLOBAL_LANE, *wanted})
        async with self.engine.begin() as connection:
            await self._ensure_lanes(connection, keys)
            now = self.clock()
            blocked = {
                row[0]: float(row[1] or 0.0)
                for row in (
                    await connection.execute(
                        _lock(
                            select(lanes.c.lane, lanes.c.blocked_until)
                            .where(lanes.c.lane.in_(keys))
                            .order_by(lanes.c.lane),
                            self._postgres,
                        )
                    )
                ).all()
            }
            queries, checks = self._ledger_queries([k for k in keys if k != GLOBAL_LANE], now)
            found: dict[int, list[float]] = {}
            for tag, at in (await connection.execute(union_all(*queries))).all():
                found.setdefault(int(tag), []).append(float(at))
            ledger = {tag: sorted(times, reverse=True) for tag, times in found.items()}
            waits: list[Slot | float] = []
            granted: list[str] = []
            for lane in wanted:
                wait = max(0.0, blocked.get(GLOBAL_LANE, 0.0) - now, blocked.get(lane, 0.0) - now)
                for key in (GLOBAL_LANE, lane):
                    for tag, rules, skipped in checks[key]:
                        times = ledger.get(tag, [])
                        for rule in rules:
                            index = rule.limit - 1 - skipped
                            if 0 <= index < len(times) and times[index] > now - rule.window_s - self.margin_s:
                                wait = max(wait, times[index] + rule.window_s + self.margin_s - now)
                if wait > 0:
                    self._hold[lane] = now + wait
                    waits.append(wait)
                    continue
                waits.append(0.0)  # replaced by the Slot once its ledger rows exist
                granted.append(lane)
                for tag, _rules, skipped in (*checks[GLOBAL_LANE], *checks[lane]):
                    if skipped == 0:  # a slot taken in this batch counts for the next request of the batch
                        ledger.setdefault(tag, []).insert(0, now)
            slots: dict[str, Slot] = {}
            for lane in granted:  # two rows per slot; a handful of lanes per batch
                ids = (
                    await connection.execute(
                        sends.insert().returning(sends.c.id),
                        [{"lane": GLOBAL_LANE, "at": now}, {"lane": lane, "at": now}],
                    )
                ).all()
                slots[lane] = Slot(lane, now, tuple(int(row[0]) for row in ids))
        for lane in granted:
            for key in (GLOBAL_LANE, lane):
                bisect.insort(self._recent.setdefault(key, []), now)
                del self._recent[key][: -self._history]
        return [slots[lane] if wait == 0.0 else wait for lane, wait in zip(wanted, waits, strict=True)]

    async def _reserve_in_memory(self, wanted: list[str]) -> list[Slot | float]:
        """SQLite serves one process, so its own sends are the whole ledger: read the table once, then count here."""
        if not self._ledger_loaded:
            await self._load_ledger()
        results: list[Slot | float] = []
        for lane in wanted:
            now = self.clock()
            wait = self._known_wait(lane, now)
            if wait > 0:
                results.append(wait)
                continue
            for key in (GLOBAL_LANE, lane):
                bisect.insort(self._recent.setdefault(key, []), now)
                del self._recent[key][: -self._history]
            results.append(Slot(lane, now, ()))
        return results

    async def _load_ledger(self) -> None:
        now = self.clock()
        horizon = max(r.window_s for r in (*self.conversation_limits, *self.bot_limits)) + self.margin_s
        async with self.engine.connect() as connection:
            rows = (await connection.execute(select(sends.c.lane, sends.c.at).where(sends.c.at > now - horizon))).all()
            blocked = (await connection.execute(select(lanes.c.lane, lanes.c.blocked_until))).all()
        for lane, at in rows:
            bisect.insort(self._recent.setdefault(lane, []), float(at))
        for lane, until in blocked:
            if until and until > now:
                self.hold(lane, float(until))
        self._ledger_loaded = True

    def sent(self, slot: Slot, done_at: float) -> None:
        """The send finished at `done_at`: count it from then on, as Teams, which saw it later than reserved, does."""
        for key in (GLOBAL_LANE, slot.lane):
            history = self._recent.get(key, [])
            index = bisect.bisect_left(history, slot.at)
            if index < len(history) and history[index] == slot.at:
                del history[index]
            bisect.insort(history, max(done_at, slot.at))

    async def record_sent(self, slot: Slot, done_at: float) -> None:
        """Move the slot's ledger rows to when the send finished, so other replicas count it as Teams does."""
        at = max(done_at, slot.at)
        async with self.engine.begin() as connection:
            if not slot.ledger_ids:  # SQLite: the ledger is written after the fact, for the next start
                await connection.execute(
                    sends.insert(), [{"lane": GLOBAL_LANE, "at": at}, {"lane": slot.lane, "at": at}]
                )
            elif done_at > slot.at:
                await connection.execute(update(sends).where(sends.c.id.in_(slot.ledger_ids)).values(at=at))

    def hold(self, lane: str, until: float) -> None:
        """No send to `lane` from this process before `until` (the shared block is written by block_lane)."""
        self._hold[lane] = max(self._hold.get(lane, 0.0), until)

    def _known_wait(self, lane: str, now: float) -> float:
        wait = max(0.0, self._hold.get(lane, 0.0) - now)
        for key, rules in ((GLOBAL_LANE, self.bot_limits), (lane, self.conversation_limits)):
            history = self._recent.get(key)
            if not history:
                continue
            for rule in rules:
                if len(history) >= rule.limit:
                    nth = history[-rule.limit]
                    wait = max(wait, nth + rule.window_s + self.margin_s - now)
        return wait

    def _ledger_queries(
        self, conversation_lanes: list[str], now: float
    ) -> tuple[list[Any], dict[str, list[tuple[int, tuple[RateRule, ...], int]]]]:
        """One UNION ALL over the ledger: the newest sends of each lane, and the n-th newest for long windows.

        A conversation lane gets at most one slot per batch, so the n-th newest send answers its hour limit; the
        bot-wide lane gets many, so all its sends within the window are read.
        """
        queries: list[Any] = []
        checks: dict[str, list[tuple[int, tuple[RateRule, ...], int]]] = {}
        lanes_and_rules = [(GLOBAL_LANE, self.bot_limits), *((k, self.conversation_limits) for k in conversation_lanes)]
        for key, rules in lanes_and_rules:
            checks[key] = []
            short = rules if key == GLOBAL_LANE else tuple(r for r in rules if r.limit <= 64)
            if short:
                tag = len(queries)
                checks[key].append((tag, short, 0))
                window = max(r.window_s for r in short) + self.margin_s
                queries.append(self._ledger_slice(tag, key, now - window, max(r.limit for r in short), 0))
            for rule in () if key == GLOBAL_LANE else (r for r in rules if r.limit > 64):
                tag = len(queries)
                checks[key].append((tag, (rule,), rule.limit - 1))
                queries.append(self._ledger_slice(tag, key, now - rule.window_s - self.margin_s, 1, rule.limit - 1))
        return queries, checks

    @staticmethod
    def _ledger_slice(tag: int, key: str, since: float, count: int, skip: int) -> Any:
        inner = (
            select(literal(tag).label("tag"), sends.c.at)
            .where(and_(sends.c.lane == key, sends.c.at > since))
            .order_by(sends.c.at.desc())
            .offset(skip)
            .limit(count)
            .subquery()
        )
        return select(inner.c.tag, inner.c.at)

    async def _ensure_lanes(self, connection: AsyncConnection, keys: Iterable[str]) -> None:
        missing = [k for k in keys if k not in self._known_lanes]
        if missing:
            await connection.execute(
                self._insert(lanes).on_conflict_do_nothing(index_elements=[lanes.c.lane]),
                [{"lane": k, "blocked_until": 0.0} for k in missing],
            )
            self._known_lanes.update(missing)

    async def prune(self, *, older_than_s: float = 3700.0, keep_done_s: float = 7 * 24 * 3600.0) -> None:
        """Forget ledger entries no window needs, and finished rows after a week."""
        now = self.clock()
        async with self.engine.begin() as connection:
            await connection.execute(delete(sends).where(sends.c.at < now - older_than_s))
            await connection.execute(
                delete(outbox).where(
                    and_(outbox.c.state.in_((DONE, CANCELLED)), outbox.c.created_at < now - keep_done_s)
                )
            )

    async def counts(self) -> dict[str, int]:
        """Queue sizes by state, plus how many due rows wait for a route."""
        async with self.engine.connect() as connection:
            rows = (await connection.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state))).all()
            unrouted = (
                await connection.execute(
                    select(func.count()).where(and_(outbox.c.state == PENDING, outbox.c.waiting.is_not(None)))
                )
            ).scalar_one()
        counts = {str(state): int(n) for state, n in rows}
        return {
            "queued": counts.get(PENDING, 0),
            "unrouted": int(unrouted),
            "failed": counts.get(FAILED, 0),
            "sent": counts.get(DONE, 0),
        }

    async def waiting_reasons(self) -> dict[str, int]:
        """Why queued rows cannot be routed, with how many rows wait for each reason."""
        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(outbox.c.waiting, func.count())
                    .where(and_(outbox.c.state == PENDING, outbox.c.waiting.is_not(None)))
                    .group_by(outbox.c.waiting)
                )
            ).all()
        return {str(reason): int(n) for reason, n in rows}

    async def lookup(self, ref: str) -> list[dict[str, Any]]:
        """Every delivery of one post (state, conversation, activity id), for the CLI and tests."""
        async with self.engine.connect() as connection:
            rows = (await connection.execute(select(outbox).where(outbox.c.ref == ref).order_by(outbox.c.part))).all()
        return [dict(row._mapping) for row in rows]


def _lock(statement: Any, postgres: bool) -> Any:
    return statement.with_for_update() if postgres else statement


def _item(row: Any) -> OutboxItem:
    return OutboxItem(
        id=int(row.id),
        ref=row.ref,
        part=int(row.part),
        target=row.target,
        priority=int(row.priority),
        action=row.action,
        payload=json.loads(row.payload),
        revision=int(row.revision),
        conversation_id=row.conversation_id,
        activity_id=row.activity_id,
        attempts=int(row.attempts),
    )


def _dump(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass(order=True)
class _Queued:
    priority: int
    id: int
    item: OutboxItem = field(compare=False)
    destination: Destination = field(compare=False)


class OutboxWorker:
    """Drains the outbox: claims due rows, sends one at a time per conversation, most urgent first."""

    def __init__(
        self,
        outbox_: Outbox,
        courier: Courier,
        *,
        lease_s: float = 30.0,
        poll_s: float = 0.25,
        max_in_flight: int = 64,
        max_held: int = 400,
    ) -> None:
        self.outbox = outbox_
        self.courier = courier
        self.owner = uuid.uuid4().hex
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.max_held = max_held
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._wake = asyncio.Event()
        self._lanes: dict[str, list[_Queued]] = {}
        self._lane_tasks: dict[str, asyncio.Task[None]] = {}
        self._held = 0
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._settling: set[asyncio.Task[None]] = set()
        self._lease_valid_until = 0.0

    def wake(self) -> None:
        """Look for work now (a post was just committed in this process)."""
        self._wake.set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="outbox-claim"),
            asyncio.create_task(self._heartbeat_loop(), name="outbox-heartbeat"),
        ]

    async def stop(self, *, grace_s: float = 5.0) -> None:
        """Let sends on the wire finish, then give every held row back."""
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        lane_tasks = list(self._lane_tasks.values())
        if lane_tasks:
            _done, pending = await asyncio.wait(lane_tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._settling:
            await asyncio.wait(list(self._settling), timeout=grace_s)
        try:
            await self.outbox.release_all(self.owner)
        except Exception:  # the leases run out by themselves
            log.warning("outbox: could not release held rows on stop")

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before claiming: a post committed meanwhile sets it again and is not missed
            try:
                claimed = await self._claim_once()
            except Exception:
                log.exception("outbox: claiming failed")
                claimed = 0
            if claimed == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def _claim_once(self) -> int:
        room = self.max_held - self._held
        # Full of queued rows: still take alarms, so one never waits behind a backlog held here.
        limit, ceiling = (min(64, room), None) if room > 0 else (16, 1)
        items = await self.outbox.claim(self.owner, limit=limit, lease_s=self.lease_s, max_priority=ceiling)
        if items:
            self._lease_valid_until = self.outbox.clock() + self.lease_s
        for item in items:
            self._held += 1
            try:
                routed = await self.courier.resolve(item)
            except Exception:
                log.exception("outbox: resolving a target failed", extra={"outbox_id": item.id})
                routed = Hold("resolution failed", backoff_s(item.attempts))
            if isinstance(routed, Hold):
                self._held -= 1
                await self.outbox.release(item, self.owner, delay_s=routed.retry_s, waiting=routed.reason)
                continue
            heapq.heappush(self._lanes.setdefault(routed.lane, []), _Queued(item.priority, item.id, item, routed))
            if routed.lane not in self._lane_tasks:
                self._lane_tasks[routed.lane] = asyncio.create_task(self._drain_lane(routed.lane))
        return len(items)

    async def _heartbeat_loop(self) -> None:
        next_prune = time.monotonic() + 60.0
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.outbox.renew(self.owner, lease_s=self.lease_s)
                self._lease_valid_until = self.outbox.clock() + self.lease_s
            except Exception:
                log.warning("outbox: could not renew leases")
            if time.monotonic() >= next_prune:  # keep the ledger to the hour its limits need
                next_prune = time.monotonic() + 600.0
                try:
                    await self.outbox.prune()
                except Exception:
                    log.warning("outbox: could not prune the send ledger")

    async def _drain_lane(self, lane: str) -> None:
        queue = self._lanes[lane]
        try:
            while queue and not self._stopping:
                slot = await self.outbox.reserve(lane, queue[0].priority)
                if not isinstance(slot, Slot):
                    await asyncio.sleep(slot)
                    continue
                entry = heapq.heappop(queue)  # chosen after the slot is ours: a newer alarm goes first
                self._held -= 1
                if self.outbox.clock() > self._lease_valid_until - 1.0:
                    # Our leases may have run out (database unreachable): another worker may own this row now.
                    await self._safe_release(entry.item, 0.0)
                    continue
                async with self._in_flight:
                    result = await self._attempt(entry.item, entry.destination)
                done_at = self.outbox.clock()
                self.outbox.sent(slot, done_at)
                if isinstance(result, Retry) and result.lane_wait:  # 429: hold this lane before its next send
                    self.outbox.hold(lane, self.outbox.clock() + result.delay_s)
                # Record the outcome off the lane's path: the next send need not wait for this write.
                task = asyncio.create_task(self._settle(entry.item, entry.destination, result, slot, done_at))
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)
        except Exception:
            log.exception("outbox: lane failed", extra={"lane_size": len(queue)})
            while queue:
                entry = heapq.heappop(queue)
                self._held -= 1
                await self._safe_release(entry.item, backoff_s(entry.item.attempts))
        finally:
            self._lane_tasks.pop(lane, None)
            if not queue:
                self._lanes.pop(lane, None)

    async def _safe_release(self, item: OutboxItem, delay_s: float) -> None:
        with contextlib.suppress(Exception):
            await self.outbox.release(item, self.owner, delay_s=delay_s)

    async def _attempt(self, item: OutboxItem, destination: Destination) -> SendResult:
        try:
            return await self.courier.send(item, destination)
        except Exception:
            log.exception("outbox: send raised", extra={"outbox_id": item.id})
            return Retry(None, backoff_s(item.attempts))

    async def _settle(
        self, item: OutboxItem, destination: Destination, result: SendResult, slot: Slot, done_at: float
    ) -> None:
        try:
            await self.outbox.record_sent(slot, done_at)
            await self._record(item, destination, result)
        except Exception:  # the lease runs out and the row is sent again: at least once, never lost
            log.exception("outbox: could not record a send", extra={"outbox_id": item.id})

    async def _record(self, item: OutboxItem, destination: Destination, result: SendResult) -> None:
        lane = destination.lane
        if isinstance(result, Sent):
            state = await self.outbox.complete(item, self.owner, conversation_id=lane, activity_id=result.activity_id)
            if item.action == POST:
                await self.courier.delivered(item, destination, result.activity_id)
            if state == PENDING:
                self.wake()
        elif isinstance(result, Retry):
            log.warning(
                "outbox: send will be retried",
                extra={"outbox_id": item.id, "status": result.status, "delay_s": round(result.delay_s, 2)},
            )
            if result.lane_wait:
                await self.outbox.block_lane(lane, self.outbox.clock() + result.delay_s)
            await self.outbox.release(item, self.owner, delay_s=result.delay_s, status=result.status)
        elif isinstance(result, Gone):
            await self.courier.gone(item, destination, result.status)
            if item.action == POST:
                await self.outbox.release(item, self.owner, delay_s=0.0, status=result.status, reroute=True)
                self.wake()
            else:  # the message is gone with its conversation: nothing left to update or delete
                await self.outbox.finish(item, self.owner, state=DONE, status=result.status)
        else:
            log.error("outbox: send refused for good", extra={"outbox_id": item.id, "status": result.status})
            await self.outbox.finish(item, self.owner, state=FAILED, status=result.status)
