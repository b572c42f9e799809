"""Real Teams Activities over a real socket to /api/messages; replies asserted at a loopback fake connector."""

from __future__ import annotations

import json
import re

from bot.teams.turn import REPLIES
from skills.protocols.assistant import ANSWERS, FEEDBACK_STREAM
from tests.bot.conftest import BotFactory, RunningBot
from tests.fakes.teams import (
    PERSONAL_CONVERSATION,
    FakeConnector,
    feedback_invoke,
    install_update,
    teams_message,
)

MESSAGE_ENTITY = "https://schema.org/Message"


async def ask(bot: RunningBot, connector: FakeConnector, text: str, **kwargs: object) -> dict:
    connector.clear()
    status, _ = await bot.post(teams_message(text, connector.url, **kwargs))  # type: ignore[arg-type]
    assert status == 201
    messages = connector.messages()
    assert len(messages) == 1, [m.body for m in connector.sent]
    return messages[0].body


async def test_english_question_gets_cited_answer(bot: RunningBot, connector: FakeConnector) -> None:
    reply = await ask(bot, connector, "What MAP do we target in septic shock?")
    assert "65 mmHg" in reply["text"]
    positions = [int(n) for n in re.findall(r"\[(\d+)\]", reply["text"])]
    assert positions and positions[0] == 1
    entities = [e for e in reply["entities"] if e["type"] == MESSAGE_ENTITY]
    assert len(entities) == 1, "exactly one root Message entity"
    entity = entities[0]
    assert entity["@type"] == "Message" and entity["@context"] == "https://schema.org"
    citations = entity["citation"]
    assert sorted(c["position"] for c in citations) == sorted(set(positions))
    for claim in citations:
        assert claim["@type"] == "Claim"
        assert f"[{claim['position']}]" in reply["text"]
        assert len(claim["appearance"]["name"]) <= 80
        assert len(claim["appearance"]["abstract"]) <= 160
    assert any("Sepsis" in c["appearance"]["name"] for c in citations)
    assert reply["channelData"]["feedbackLoop"] == {"type": "default"}
    # no model is configured: the answer is quoted, not generated, so no AI label
    assert "additionalType" not in entity
    # a reply goes to the conversation it answers
    sent = connector.messages()[0]
    assert sent.path.startswith("/v3/conversations/")
    assert "personal-chat-with-nurse" in sent.path


async def test_korean_question_gets_korean_cited_answer(bot: RunningBot, connector: FakeConnector) -> None:
    reply = await ask(bot, connector, "패혈성 쇼크에서 목표 평균동맥압은 얼마인가요?", locale="ko-KR")
    assert "65 mmHg" in reply["text"]
    assert "프로토콜" in reply["text"]
    entity = next(e for e in reply["entities"] if e["type"] == MESSAGE_ENTITY)
    assert any("패혈증" in c["appearance"]["name"] for c in entity["citation"])


async def test_question_outside_the_protocols_is_not_answered(bot: RunningBot, connector: FakeConnector) -> None:
    reply = await ask(bot, connector, "How do I treat a rattlesnake bite in a dog?")
    assert "don't seem to cover" in reply["text"]
    assert "[1]" not in reply["text"]
    assert not reply.get("entities") or all(e["type"] != MESSAGE_ENTITY for e in reply["entities"])
    assert "feedbackLoop" not in (reply.get("channelData") or {})


async def test_help_lists_commands(bot: RunningBot, connector: FakeConnector) -> None:
    reply = await ask(bot, connector, "help")
    assert "`help`" in reply["text"] and "`ask" in reply["text"]
    korean = await ask(bot, connector, "도움말")
    assert "도움말" in korean["text"] and "`ask" in korean["text"]


async def test_channel_mention_is_stripped_and_answered(bot: RunningBot, connector: FakeConnector) -> None:
    reply = await ask(bot, connector, "what MAP do we target in septic shock?", kind="channel")
    assert "65 mmHg" in reply["text"]
    assert "<at>" not in reply["text"]
    assert connector.typing() == []  # Teams shows no typing indicator in channels


async def test_ask_command(bot: RunningBot, connector: FakeConnector) -> None:
    reply = await ask(bot, connector, "ask how often should central line dressings be changed?")
    assert re.search(r"\[1\]", reply["text"])
    empty = await ask(bot, connector, "ask")
    assert "Ask me a question" in empty["text"]


async def test_feedback_vote_is_stored_against_the_answer(bot: RunningBot, connector: FakeConnector) -> None:
    from bot.app import SERVICES

    await ask(bot, connector, "What MAP do we target in septic shock?")
    answer_activity_id = connector.messages()[0].response_id

    store = bot.app[SERVICES].store
    sent = await store.get(REPLIES, answer_activity_id)
    assert sent is not None and sent["skill"] == "protocols"
    status, body = await bot.post(feedback_invoke(answer_activity_id, "dislike", connector.url, "too long"))
    assert status == 200
    assert body == b"", "Teams wants an empty body for message/submitAction"
    votes = await store.read(FEEDBACK_STREAM)
    assert len(votes) == 1
    vote = votes[0][1]
    assert vote["reaction"] == "dislike" and vote["comment"] == "too long"
    assert vote["question"] == "What MAP do we target in septic shock?"
    assert any("Sepsis" in c["title"] for c in vote["citations"])
    answer = await store.get(ANSWERS, sent["record_id"])
    assert answer is not None and answer["feedback"][0]["reaction"] == "dislike"


async def test_feedback_for_unknown_message_changes_nothing(bot: RunningBot, connector: FakeConnector) -> None:
    from bot.app import SERVICES

    status, body = await bot.post(feedback_invoke("no-such-activity", "like", connector.url))
    assert status == 200 and body == b""
    assert await bot.app[SERVICES].store.read(FEEDBACK_STREAM) == []


async def test_unknown_invoke_is_not_implemented(bot: RunningBot, connector: FakeConnector) -> None:
    activity = feedback_invoke("x", "like", connector.url)
    activity["name"] = "composeExtension/query"
    status, _ = await bot.post(activity)
    assert status == 501


async def test_install_in_personal_chat_welcomes_and_remembers(bot: RunningBot, connector: FakeConnector) -> None:
    from bot.app import SERVICES
    from bot.teams.handler import CONVERSATIONS

    status, _ = await bot.post(install_update(connector.url))
    assert status == 201
    assert "Wardline" in connector.messages()[0].text
    record = await bot.app[SERVICES].store.get(CONVERSATIONS, PERSONAL_CONVERSATION)
    assert record is not None and record["tenant_id"] and record["reference"]["serviceUrl"] == connector.url


async def test_bad_requests_are_rejected_without_side_effects(bot: RunningBot, connector: FakeConnector) -> None:
    assert (await bot.post_raw(b"{not json", "application/json"))[0] == 400
    assert (await bot.post_raw(b"[]", "application/json"))[0] == 400
    assert (await bot.post_raw(b'{"text": "no type"}', "application/json"))[0] == 400
    assert (await bot.post_raw(b"hello", "text/plain"))[0] == 415
    missing_service_url = teams_message("hi", connector.url)
    del missing_service_url["serviceUrl"]
    assert (await bot.post(missing_service_url))[0] == 400
    assert connector.sent == []


async def test_connector_failure_is_logged_not_500(start_bot: BotFactory, connector: FakeConnector) -> None:
    bot = await start_bot()
    connector.fail_next = [500, 500, 500, 500]
    status, _ = await bot.post(teams_message("What MAP do we target in septic shock?", connector.url))
    assert status == 201  # the turn failed on the connector; the apology attempt is logged, nothing crashes


async def test_turn_error_sends_an_apology_without_internals(bot: RunningBot, connector: FakeConnector) -> None:
    from bot.app import SERVICES

    services = bot.app[SERVICES]

    async def broken(message: object, turn: object) -> None:
        raise RuntimeError("database password is hunter2")

    services.router.skills[0].fallback = broken
    status, _ = await bot.post(teams_message("What MAP do we target?", connector.url))
    assert status == 201
    text = connector.messages()[-1].text
    assert "Sorry, something went wrong" in text
    assert "hunter2" not in text and "RuntimeError" not in text


async def test_feedback_without_reply_to_id_rates_the_newest_answer(bot: RunningBot, connector: FakeConnector) -> None:
    from bot.app import SERVICES

    await ask(bot, connector, "What MAP do we target in septic shock?")
    await ask(bot, connector, "How often should central line dressings be changed?")
    invoke = feedback_invoke("ignored", "like", connector.url)
    del invoke["replyToId"]
    invoke["value"]["actionValue"]["feedback"] = "clear answer"  # plain text, as Agents Playground sends it
    status, body = await bot.post(invoke)
    assert (status, body) == (200, b"")
    votes = await bot.app[SERVICES].store.read(FEEDBACK_STREAM)
    assert votes[-1][1]["question"] == "How often should central line dressings be changed?"
    assert votes[-1][1]["comment"] == "clear answer"


async def test_connector_throttling_is_retried(bot: RunningBot, connector: FakeConnector) -> None:
    connector.clear()
    connector.fail_next = [200, 429, 502]  # the typing indicator goes through; the answer is throttled twice
    status, _ = await bot.post(teams_message("What MAP do we target in septic shock?", connector.url))
    assert status == 201
    answers = [s for s in connector.messages() if "65 mmHg" in s.text]
    assert len(answers) == 3, "sent, throttled, bad gateway, then delivered"


async def test_stale_card_buttons_get_a_clear_answer(bot: RunningBot, connector: FakeConnector) -> None:
    # Action.Execute arrives as an adaptiveCard/action invoke; Action.Submit as a message carrying `value`.
    execute = feedback_invoke("card-1", "like", connector.url)
    execute["name"] = "adaptiveCard/action"
    execute["value"] = {"action": {"type": "Action.Execute", "verb": "retired-verb", "data": {"x": 1}}}
    status, body = await bot.post(execute)
    assert status == 200
    assert json.loads(body)["statusCode"] == 200
    assert "no longer active" in connector.messages()[-1].text
    connector.clear()
    submit = teams_message("", connector.url, value={"verb": "retired-verb"})
    assert (await bot.post(submit))[0] == 201
    assert "no longer active" in connector.messages()[-1].text
