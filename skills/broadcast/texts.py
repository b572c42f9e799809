"""Every user-facing string of the broadcast skill, in English and Korean."""
# ruff: noqa: E501  (one string per line, however long, so translators can compare the two languages)

from __future__ import annotations

from typing import Any

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "usage": "Type `broadcast 7W,8E: text` or `broadcast all: text`. Before the colon, `ack` asks units to acknowledge and `at 14:00` schedules it. Also `broadcast status [ID]` and `broadcast remind ID`.",
        "managers_only": "Sorry, broadcasts are only available to the manager role. Ask your ward manager if you need access.",
        "unknown_units": "I don't know these units: {units}. Nothing was sent.",
        "no_units": "There are no units to send to. Nothing was sent.",
        "not_configured": "Broadcasts are not set up yet: Wardline has no unit directory. Ask IT to configure it.",
        "cannot_schedule": "Scheduled broadcasts are not available here. Send it without `at`.",
        "sent": "Broadcast {id} sent to {count} units{ack}.",
        "sent_ack": ", asking for acknowledgement",
        "scheduled": "Broadcast {id} scheduled for {when} ({zone}) to {count} units{ack}.",
        "card_title": "Broadcast from {author}",
        "card_meta": "{id} · {when}",
        "ack_requested": "Please acknowledge for your unit.",
        "ack": "Acknowledge",
        "acked_by": "Acknowledged by {name} at {at}",
        "acked_more": " (+{more} more)",
        "ack_thanks": "Thank you: {unit} acknowledged {id}.",
        "not_on_unit": "Sorry, only staff on {unit} can acknowledge for {unit}.",
        "unknown_id": "I can't find broadcast {id}.",
        "no_broadcasts": "No broadcasts yet.",
        "status_line": "{id} · {when} · {units} units · {state}",
        "status_acks": "acknowledged {acked}/{units}{pending}",
        "status_pending": "; waiting for {names}",
        "status_no_ack": "no acknowledgement asked",
        "status_scheduled": "scheduled for {when}",
        "remind_text": "Reminder: please acknowledge broadcast {id} for {unit}.",
        "reminded": "Reminded {count} units that have not acknowledged {id}: {units}.",
        "nothing_to_remind": "Every unit has acknowledged {id}; nobody to remind.",
        "remind_no_ack": "Broadcast {id} did not ask for acknowledgement.",
        "remind_not_sent": "Broadcast {id} has not been sent yet.",
    },
    "ko": {
        "usage": "`broadcast 7W,8E: 내용` 또는 `broadcast all: 내용`을 입력하세요. 콜론 앞에 `ack`를 쓰면 병동별 확인을 요청하고, `at 14:00`을 쓰면 예약합니다. `broadcast status [ID]`, `broadcast remind ID`도 있습니다.",
        "managers_only": "죄송합니다. 공지는 관리자(manager) 권한이 있는 사용자만 보낼 수 있습니다. 필요하면 병동 관리자에게 문의하세요.",
        "unknown_units": "다음 병동을 찾을 수 없습니다: {units}. 아무것도 보내지 않았습니다.",
        "no_units": "보낼 병동이 없습니다. 아무것도 보내지 않았습니다.",
        "not_configured": "공지 기능이 아직 설정되지 않았습니다 (병동 디렉터리 없음). IT 담당자에게 문의하세요.",
        "cannot_schedule": "여기서는 예약 공지를 사용할 수 없습니다. `at` 없이 보내세요.",
        "sent": "공지 {id}를 {count}개 병동에 보냈습니다{ack}.",
        "sent_ack": " (확인 요청 포함)",
        "scheduled": "공지 {id}를 {when} ({zone})에 {count}개 병동으로 예약했습니다{ack}.",
        "card_title": "{author} 님의 공지",
        "card_meta": "{id} · {when}",
        "ack_requested": "병동별로 확인을 눌러 주세요.",
        "ack": "확인",
        "acked_by": "{name} 님이 {at}에 확인",
        "acked_more": " (외 {more}명)",
        "ack_thanks": "{unit} 병동의 {id} 확인을 기록했습니다.",
        "not_on_unit": "죄송합니다. {unit} 병동의 확인은 {unit} 소속 직원만 할 수 있습니다.",
        "unknown_id": "공지 {id}를 찾을 수 없습니다.",
        "no_broadcasts": "아직 공지가 없습니다.",
        "status_line": "{id} · {when} · {units}개 병동 · {state}",
        "status_acks": "확인 {acked}/{units}{pending}",
        "status_pending": "; 미확인: {names}",
        "status_no_ack": "확인 요청 없음",
        "status_scheduled": "{when} 예약",
        "remind_text": "알림: {unit} 병동에서 공지 {id}를 확인해 주세요.",
        "reminded": "{id}를 확인하지 않은 {count}개 병동에 알림을 보냈습니다: {units}.",
        "nothing_to_remind": "모든 병동이 {id}를 확인했습니다. 알릴 곳이 없습니다.",
        "remind_no_ack": "공지 {id}는 확인을 요청하지 않았습니다.",
        "remind_not_sent": "공지 {id}는 아직 발송되지 않았습니다.",
    },
}


def t(lang: str, key: str, **values: Any) -> str:
    """One string in the language, formatted."""
    return TEXTS.get(lang, TEXTS["en"])[key].format(**values)
