"""I-PASS shift handovers on each unit's clock: notes in 1:1 chats, one summary card per unit channel."""

from __future__ import annotations

from skills.core.skill import CardAction, Command, Context, Skill, TimerHandler
from skills.handover.service import ACK_TIMER, Handovers


def create_skill(context: Context) -> Skill:
    """The handover skill; with no directory it still answers, politely, that it is not set up."""
    handovers = Handovers(context)
    return Skill(
        name="handover",
        description="I-PASS shift handovers",
        commands=[
            Command(
                name="handover",
                aliases=("인계",),
                usage="<bed> | <unit>-<bed> | status [unit] | post [unit]",
                description="Write or read a bed's I-PASS handover note; see or post the unit's handover",
                description_ko="병상의 I-PASS 인계 기록 작성/보기, 병동 인계 상태 확인/게시",
                handler=handovers.on_command,
            )
        ],
        card_actions=[
            CardAction("handover.save", handovers.on_save),
            CardAction("handover.open", handovers.on_open),
            CardAction("handover.ack", handovers.on_ack),
            CardAction("handover.details", handovers.on_details),
        ],
        jobs=handovers.jobs(),
        timers=[TimerHandler(ACK_TIMER, handovers.on_ack_timer)],
        health=handovers.health,
    )


__all__ = ["Handovers", "create_skill"]
