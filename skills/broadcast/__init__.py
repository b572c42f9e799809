"""Manager broadcasts to unit channels, with acknowledgement per unit."""

from __future__ import annotations

from skills.broadcast.service import MANAGER, SEND_TIMER, Broadcasts, parse, report_csv
from skills.core.skill import CardAction, Command, Context, Skill, TimerHandler


def create_skill(context: Context) -> Skill:
    """The broadcast skill: only managers send; anyone on a unit acknowledges for it."""
    broadcasts = Broadcasts(context)
    return Skill(
        name="broadcast",
        description="Manager broadcasts to unit channels",
        commands=[
            Command(
                name="broadcast",
                aliases=("공지",),
                usage="<units|all> [ack] [at HH:MM]: <text> | status [ID] | remind ID",
                description="Send a notice to unit channels, optionally asking each unit to acknowledge",
                description_ko="병동 채널에 공지 보내기 (병동별 확인 요청 가능)",
                handler=broadcasts.on_command,
                roles=frozenset({MANAGER}),
            )
        ],
        card_actions=[CardAction("broadcast.ack", broadcasts.on_ack)],
        timers=[TimerHandler(SEND_TIMER, broadcasts.on_send_timer)],
    )


__all__ = ["Broadcasts", "create_skill", "parse", "report_csv"]
