"""Durable one-off timers (the Timers port) on a SQL table, fired by the leader exactly once.

A timer is a row (kind, key) with a due time. `schedule_at` upserts it (moving a pending one), `cancel` marks it
cancelled. The leader claims due rows with a state change in one transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL),
runs the skill's handler, and marks the row done. Nothing polls fast: the loop sleeps until the nearest due time, and
`schedule_at` wakes it (in this process directly; across replicas through PostgreSQL NOTIFY on the leader's connection).

Failure policy (ids only in logs):
- a handler that raises is retried twice more, 10 s and then 60 s later; after the third failure the row is `failed`;
- a handler that outlives its timeout counts as a failure;
- a replica that dies mid-handler leaves the row `firing` with a lease; when the lease runs out, the next leader fires
  it again (same attempt budget). Handlers should post with idempotent Notifier keys, so a re-fire after a crash
  cannot double a message;
- a row whose kind no skill handles is `failed` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    and_,
    delete,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.logs import bind, unbind
from bot.storage import timers
from skills.core.ports import Clock, TimerEvent
from skills.core.skill import Skill, TimerFunc

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "wardline_timers"
PENDING, FIRING, DONE, FAILED, CANCELLED = "pending", "firing", "done", "failed", "cancelled"


def _utc(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; every stored time is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SqlTimers:
    """The Timers port and the leader's firing loop over the `timers` table."""

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        *,
        replica: str = "",
        handler_timeout_s: float = 60.0,
        max_attempts: int = 3,
        retry_delays_s: Sequence[float] = (10.0, 60.0),
        batch: int = 16,
        idle_s: float = 30.0,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.replica = replica or uuid.uuid4().hex[:12]
        self.handler_timeout_s = handler_timeout_s
        self.max_attempts = max_attempts
        self.retry_delays_s = tuple(retry_delays_s)
        self.batch = batch
        self.idle_s = idle_s
        self.retention = retention
        self.handlers: dict[str, TimerFunc] = {}
        self.fired = 0
        self.failed = 0
        self._postgres = engine.dialect.name == "postgresql"
        self._wakeup = asyncio.Event()
        self._last_purge: datetime | None = None

    def add_skills(self, skills: Sequence[Skill]) -> None:
        """Route each kind to the skill that declared it; one kind, one handler."""
        for skill in skills:
            for declared in skill.timers:
                if declared.kind in self.handlers:
                    raise ValueError(f"timer kind {declared.kind!r} is declared twice (skill {skill.name})")
                self.handlers[declared.kind] = declared.handler

    async def schedule_at(self, kind: str, key: str, when: datetime, payload: Mapping[str, Any]) -> None:
        if when.tzinfo is None:
            raise ValueError("timer time must be timezone-aware")
        if not kind or len(kind) > 64 or not key or len(key) > 512:
            raise ValueError("timer kind (1-64 characters) and key (1-512) are required")
        when = when.astimezone(UTC)
        now = self.clock.now()
        fields: dict[str, Any] = {
            "due_at": when,
            "run_at": when,
            "payload": json.dumps(dict(payload), ensure_ascii=False, separators=(",", ":"), default=str),
            "state": PENDING,
            "attempts": 0,
            "claim": None,
            "claimed_by": None,
            "lease_until": None,
            "fired_at": None,
            "error": None,
            "updated_at": now,
        }
        dialect_insert = pg_insert if self._postgres else sqlite_insert
        statement = dialect_insert(timers).values(kind=kind, key=key, **fields)
        statement = statement.on_conflict_do_update(index_elements=[timers.c.kind, timers.c.key], set_=fields)
        async with self.engine.begin() as connection:
            await connection.execute(statement)
            if self._postgres:  # delivered at commit to the leader's listening connection
                await connection.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})
        self.wake()

    async def cancel(self, kind: str, key: str) -> bool:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(timers)
                .where(and_(timers.c.kind == kind, timers.c.key == key, timers.c.state == PENDING))
                .values(state=CANCELLED, updated_at=self.clock.now())
            )
        return bool(result.rowcount)

    async def state(self, kind: str, key: str) -> dict[str, Any] | None:
        """One timer's row (for tests, the CLI and audits)."""
        async with self.engine.connect() as connection:
            row = (
                (await connection.execute(select(timers).where(and_(timers.c.kind == kind, timers.c.key == key))))
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def wake(self) -> None:
        """Something changed: re-compute the next due time now."""
        self._wakeup.set()

    async def fire_due(self) -> int:
        """Claim and run every timer due now (in batches); return how many handlers ran."""
        total = 0
        while True:
            claimed = await self._claim()
            if claimed:
                await asyncio.gather(*(self._fire(*row) for row in claimed))
                total += len(claimed)
            if len(claimed) < self.batch:
                return total

    async def run(self) -> None:
        """Fire timers until cancelled: sleep until the nearest due time or a wake-up, never a fast poll."""
        while True:
            self._wakeup.clear()
            try:
                await self.fire_due()
                await self._purge()
                delay = await self._seconds_to_next()
            except Exception as exc:  # the database may be restarting; try again shortly
                log.error("timer loop failed; retrying", extra={"error": type(exc).__name__})
                delay = 5.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=max(delay, 0.0))

    async def _claim(self) -> list[tuple[str, str, str, TimerEvent, int]]:
        now = self.clock.now()
        claim = uuid.uuid4().hex
        expired = and_(timers.c.state == FIRING, timers.c.lease_until <= now)
        async with self.engine.begin() as connection:
            exhausted = await connection.execute(
                update(timers)
                .where(and_(expired, timers.c.attempts >= self.max_attempts))
                .values(state=FAILED, claim=None, error="interrupted on every attempt", updated_at=now)
                .returning(timers.c.kind, timers.c.key)
            )
            for kind, key in exhausted.all():
                self.failed += 1
                log.error("timer failed: its replica died on every attempt", extra={"timer_kind": kind, "key": key})
            claimable = or_(and_(timers.c.state == PENDING, timers.c.run_at <= now), expired)
            due = select(timers.c.kind, timers.c.key).where(claimable).order_by(timers.c.run_at).limit(self.batch)
            if self._postgres:
                due = due.with_for_update(skip_locked=True)  # another claimer's rows are skipped, never waited on
            result = await connection.execute(
                update(timers)
                .where(and_(tuple_(timers.c.kind, timers.c.key).in_(due), claimable))
                .values(
                    state=FIRING,
                    claim=claim,
                    claimed_by=self.replica,
                    attempts=timers.c.attempts + 1,
                    lease_until=now + timedelta(seconds=self.handler_timeout_s + 30),
                    fired_at=now,
                    updated_at=now,
                )
                .returning(timers.c.kind, timers.c.key, timers.c.due_at, timers.c.payload, timers.c.attempts)
            )
            rows = result.all()
        return [
            (kind, key, claim, TimerEvent(kind, key, _utc(due_at), json.loads(payload)), int(attempts))
            for kind, key, due_at, payload, attempts in rows
        ]

    async def _fire(self, kind: str, key: str, claim: str, event: TimerEvent, attempt: int) -> None:
        token = bind(timer_kind=kind, timer_key=key)
        try:
            handler = self.handlers.get(kind)
            if handler is None:
                log.error("timer has no handler; marked failed", extra={"attempt": attempt})
                await self._finish(kind, key, claim, FAILED, error="no handler for this kind")
                self.failed += 1
                return
            try:
                await asyncio.wait_for(handler(event), timeout=self.handler_timeout_s)
            except asyncio.CancelledError:
                # Shutting down: hand the timer back untouched so the next leader fires it.
                await asyncio.shield(self._release(kind, key, claim))
                raise
            except Exception as exc:  # any handler failure: logged with ids only, retried a bounded number of times
                await self._failed_attempt(kind, key, claim, attempt, exc)
                return
            await self._finish(kind, key, claim, DONE)
            self.fired += 1
        finally:
            unbind(token)

    async def _failed_attempt(self, kind: str, key: str, claim: str, attempt: int, exc: BaseException) -> None:
        error = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        if attempt < self.max_attempts:
            delay = self.retry_delays_s[min(attempt - 1, len(self.retry_delays_s) - 1)] if self.retry_delays_s else 0
            log.warning("timer handler failed; will retry", extra={"attempt": attempt, "error": error})
            retry_at = self.clock.now() + timedelta(seconds=delay)
            await self._finish(kind, key, claim, PENDING, error=error, run_at=retry_at)
        else:
            log.error("timer handler failed on its last attempt; marked failed", extra={"attempt": attempt})
            await self._finish(kind, key, claim, FAILED, error=error)
            self.failed += 1

    async def _finish(self, kind: str, key: str, claim: str, state: str, **values: Any) -> None:
        async with self.engine.begin() as connection:
            # Only the claimer finishes, and only while its claim stands (a re-schedule meanwhile clears it).
            await connection.execute(
                update(timers)
                .where(and_(timers.c.kind == kind, timers.c.key == key, timers.c.claim == claim))
                .values(state=state, claim=None, lease_until=None, updated_at=self.clock.now(), **values)
            )

    async def _release(self, kind: str, key: str, claim: str) -> None:
        with contextlib.suppress(Exception):  # shutting down; the lease expiry covers a failure here
            await self._finish(kind, key, claim, PENDING, attempts=timers.c.attempts - 1)

    async def _seconds_to_next(self) -> float:
        async with self.engine.connect() as connection:
            pending = (
                await connection.execute(select(func.min(timers.c.run_at)).where(timers.c.state == PENDING))
            ).scalar()
            lease = (
                await connection.execute(select(func.min(timers.c.lease_until)).where(timers.c.state == FIRING))
            ).scalar()
        nearest = [_utc(value) for value in (pending, lease) if value is not None]
        if not nearest:
            return self.idle_s
        return min(max((min(nearest) - self.clock.now()).total_seconds(), 0.0), self.idle_s)

    async def _purge(self) -> None:
        now = self.clock.now()
        if self._last_purge is not None and now - self._last_purge < timedelta(hours=1):
            return
        self._last_purge = now
        async with self.engine.begin() as connection:
            await connection.execute(
                delete(timers).where(
                    and_(timers.c.state.in_((DONE, CANCELLED)), timers.c.updated_at < now - self.retention)
                )
            )

    def health(self) -> dict[str, Any]:
        return {"fired": self.fired, "failed": self.failed}
