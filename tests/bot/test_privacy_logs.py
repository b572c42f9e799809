"""Patient data never reaches the logs: a whole conversation at DEBUG leaves no message text behind."""

from __future__ import annotations

import json
import logging

import pytest

from bot.logs import JsonFormatter
from tests.bot.conftest import RunningBot
from tests.fakes.teams import FakeConnector, feedback_invoke, teams_message

SECRET_QUESTION = "Kim Minji in bed 12, MRN 55667788, what MAP do we target in septic shock?"


async def test_no_message_text_or_passage_is_logged(
    bot: RunningBot, connector: FakeConnector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await bot.post(teams_message(SECRET_QUESTION, connector.url, user_name="Park Nurse"))
    answer = connector.messages()[-1]
    await bot.post(feedback_invoke(answer.response_id, "dislike", connector.url, "Kim Minji needs a different dose"))
    formatter = JsonFormatter()
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert "message handled" in logged  # the turn was logged, by ids and outcome
    for secret in ("Kim Minji", "55667788", "septic shock", "Park Nurse", "different dose", "65 mmHg"):
        assert secret not in logged, f"{secret!r} leaked into the logs"


def test_json_log_lines_carry_the_extra_fields() -> None:
    record = logging.makeLogRecord({"msg": "turn failed", "levelname": "ERROR", "name": "bot", "activity_id": "a1"})
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "turn failed"
    assert line["activity_id"] == "a1"
    assert line["level"] == "error"


def test_log_lines_inside_a_turn_carry_its_ids() -> None:
    from bot.logs import ContextFilter, bind, unbind

    record = logging.makeLogRecord({"msg": "x"})
    token = bind(activity_id="a1", conversation_id="c1")
    try:
        ContextFilter().filter(record)
    finally:
        unbind(token)
    assert (record.activity_id, record.conversation_id) == ("a1", "c1")  # type: ignore[attr-defined]
    later = logging.makeLogRecord({"msg": "y"})
    ContextFilter().filter(later)
    assert not hasattr(later, "activity_id")
