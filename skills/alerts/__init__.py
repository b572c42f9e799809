"""Device alerts: Wardline as the IHE PCD ACM Alert Manager, with Teams as its communicator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from skills.alerts.cards import VERB_ACCEPT, VERB_DECLINE, VERB_FALSE_ALARM, local_time
from skills.alerts.desk import TIMER_ESCALATE, TIMER_HOLDOFF, TIMER_LINK, AlertDesk, AlertSettings
from skills.alerts.mdc import event_words
from skills.alerts.texts import text
from skills.core.ports import Turn
from skills.core.skill import CardAction, Command, Consumer, Context, Job, Skill, TimerHandler
from skills.core.types import Message, Reply

__all__ = ["AlertDesk", "AlertSettings", "create_skill", "settings_from"]


def settings_from(options: Mapping[str, Any]) -> AlertSettings:
    """Alert settings from the host's options (WARDLINE_BIOMED_TARGET, the timezone); defaults for the rest."""
    return AlertSettings(
        biomed_target=str(options.get("biomed_target", "")),
        timezone=str(options.get("timezone", "Asia/Seoul")),
        locale=str(options.get("alerts_locale", "en")),
    )


def create_skill(context: Context, desk: AlertDesk | None = None) -> Skill:
    """The alerts skill; needs a Notifier and Timers (alarms that cannot be delivered are not accepted)."""
    if desk is None:
        if context.notifier is None or context.timers is None:
            raise ValueError("the alerts skill needs a notifier and durable timers")
        desk = AlertDesk(
            context.store,
            context.clock,
            context.notifier,
            context.timers,
            context.directory,
            settings_from(context.options),
        )
    ready = desk

    def responder(verb: str) -> Any:
        async def handle(message: Message, turn: Turn) -> None:
            await ready.respond(message, turn, verb)

        return handle

    async def list_open(message: Message, turn: Turn) -> None:
        locale = message.locale or desk.settings.locale
        unit = message.argument.strip()  # unit names may contain spaces ("HO 3 West ICU")
        channel = message.conversation.channel or ""
        if not unit and channel.startswith("unit:"):
            unit = channel.removeprefix("unit:")
        if not unit and len(message.user.units) == 1:
            [unit] = message.user.units
        if not unit:
            await turn.send(Reply(text=text(locale, "list.which_unit"), skill="alerts"))
            return
        records = await desk.open_alarms(unit)
        if not records:
            await turn.send(Reply(text=text(locale, "list.none", unit=unit), skill="alerts"))
            return
        zone = desk.zone_for(unit)
        lines = [text(locale, "list.header", unit=unit)]
        for record in records:
            alert = record["alert"]
            owner = record.get("accepted")
            lines.append(
                text(
                    locale,
                    "list.line",
                    priority=text(locale, "priority." + alert["priority"]),
                    event=event_words(alert["event_code"], alert.get("event_text", ""), locale),
                    room=alert["room"] or "-",
                    bed=alert["bed"] or "-",
                    time=local_time(alert["occurred_at"], zone),
                    owner=text(locale, "list.owner", name=owner["name"]) if owner else "",
                )
            )
        await turn.send(Reply(text="\n".join(lines), skill="alerts"))

    async def health() -> dict[str, Any]:
        return {"ready": True, "applied": desk.applied, "backlog": desk.backlog}

    return Skill(
        name="alerts",
        description="Device alarms from monitors and pumps, with accept and escalation",
        commands=[
            Command(
                name="alerts",
                aliases=("알람",),
                description="List the open device alarms of a unit",
                description_ko="병동의 진행 중인 장비 알람을 보여줍니다",
                usage="[unit]",
                handler=list_open,
            )
        ],
        card_actions=[
            CardAction(VERB_ACCEPT, responder("accept")),
            CardAction(VERB_FALSE_ALARM, responder("false_alarm")),
            CardAction(VERB_DECLINE, responder("decline")),
        ],
        jobs=[
            Job(id="alerts.digest", func=desk.post_digest, interval_seconds=15 * 60, misfire_grace_seconds=15 * 60),
            Job(id="alerts.purge", func=desk.purge, cron={"hour": "3", "minute": "17"}, misfire_grace_seconds=6 * 3600),
        ],
        timers=[
            TimerHandler(TIMER_HOLDOFF, desk.on_holdoff),
            TimerHandler(TIMER_ESCALATE, desk.on_escalate),
            TimerHandler(TIMER_LINK, desk.on_link_silence),
        ],
        consumers=[Consumer("hl7v2", desk.receive_hl7), Consumer("alerts.json", desk.receive_json)],
        startup=desk.start,
        shutdown=desk.stop,
        health=health,
    )
