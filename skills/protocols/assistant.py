"""Answers protocol questions: retrieve, then generate with citations, quote, or say it is not covered."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from urllib.parse import quote

from skills.core.i18n import language_of
from skills.core.ports import LLM, ChatMessage, Clock, LLMError, Store, Stream, Turn
from skills.core.privacy import mask_identifiers, without_identifiers
from skills.core.types import ChatTurn, Citation, Feedback, Message, Reply
from skills.protocols.answer import (
    NOT_COVERED,
    Source,
    build_prompt,
    extractive_answer,
    finish_generated,
    is_not_covered,
    not_covered_text,
)
from skills.protocols.library import ProtocolLibrary
from skills.protocols.retrieval import Hit

log = logging.getLogger(__name__)

FOLLOW_UP_MAX_TERMS = 3  # a question with more content words than this stands on its own
ANSWERS = "protocols.answers"
HISTORY = "protocols.history"
FEEDBACK_STREAM = "protocols.feedback"


@dataclass(frozen=True, slots=True)
class AssistantOptions:
    """Tunables of the answering flow."""

    top_k: int = 5
    max_sources: int = 5
    history_turns: int = 3
    history_minutes: int = 30
    answer_timeout_s: float = 8.0  # keeps a Teams turn under ~10 s, retrieval included
    stream_interval_s: float = 1.2  # Teams asks for about one streaming update every 1-2 s
    documents_base_url: str = ""  # citations link to base + document path when set


@dataclass(slots=True)
class Answer:
    """The outcome of one question."""

    text: str
    citations: list[Citation]
    mode: str  # "generated", "extractive", "not_covered" or "not_ready"

    @property
    def ai_generated(self) -> bool:
        return self.mode == "generated"


class ProtocolAssistant:
    """The protocol skill's brain; the Teams-facing handler and `wardline ask` both call it."""

    def __init__(
        self,
        library: ProtocolLibrary,
        store: Store,
        clock: Clock,
        llm: LLM | None = None,
        options: AssistantOptions | None = None,
    ) -> None:
        self.library = library
        self.store = store
        self.clock = clock
        self.llm = llm
        self.options = options or AssistantOptions()

    async def retrieve(self, question: str, history: Sequence[ChatTurn] = ()) -> list[Hit]:
        """Covered hits for the question; a short follow-up borrows the previous question's words."""
        retriever = await self.library.current()  # reloads first when another replica changed the library
        question = without_identifiers(question)  # record numbers and the like only dilute the search
        hits = await retriever.search(question, self.options.top_k)
        covered = retriever.answerable(hits)
        if not covered and history and sum(retriever.key_terms(question).values()) <= FOLLOW_UP_MAX_TERMS:
            # "what about children?": read it with the previous question, but keep only sections that also
            # speak to something in the new question, so an unrelated question does not inherit the old topic.
            hits = await retriever.search(f"{history[-1].question} {question}", self.options.top_k)
            own = retriever.coverage_of(question, hits)
            covered = [h for h, mine in zip(hits, own, strict=True) if retriever.is_covered(h) and mine > 0]
        return covered

    async def answer(self, question: str, history: Sequence[ChatTurn] = ()) -> Answer:
        """One answer without streaming."""
        language = language_of(question)
        if not self.library.retriever.chunks:
            return Answer(library_loading_text(language), [], "not_ready")
        hits = await self.retrieve(question, history)
        if not hits:
            return await self._not_covered(question, language)
        if self.llm is None:
            return self._extractive(question, hits, language)
        return await self._generate(question, hits, language, history, self.llm.complete)

    async def _generate(
        self,
        question: str,
        hits: list[Hit],
        language: str,
        history: Sequence[ChatTurn],
        produce: Callable[[list[ChatMessage]], Awaitable[str]],
    ) -> Answer:
        """A cited answer from the model, or quoted extracts when it fails, times out or cites nothing."""
        sources = self._sources(hits)
        prompt = build_prompt(mask_identifiers(question), sources, language, self._masked(history))
        try:
            async with asyncio.timeout(self.options.answer_timeout_s):
                text = await produce(prompt)
        except (LLMError, TimeoutError) as exc:
            log.warning("generation failed, answering with extracts", extra={"reason": type(exc).__name__})
        else:
            generated = self._finish(text, sources)
            if generated is not None:
                return generated
        return self._extractive(question, hits, language)

    async def respond(self, message: Message, turn: Turn) -> None:
        """Answer a chat message, streaming in 1:1 chats when a model is configured."""
        question = message.text.strip()
        if message.command_word in ("ask", "질문"):
            question = message.argument
        if not question:
            await turn.send(
                Reply(text="Ask me a question about a protocol, e.g. `ask what MAP do we target in septic shock?`")
            )
            return
        history = await self._history(message)
        if self.llm is not None and turn.can_stream and self.library.retriever.chunks:
            answer = await self._answer_streaming(message, question, history, turn)
        else:
            await turn.typing()
            answer = await self.answer(question, history)
            await turn.send(await self._record(message, question, answer))
        await self._remember(message, question, answer)

    async def _answer_streaming(
        self, message: Message, question: str, history: Sequence[ChatTurn], turn: Turn
    ) -> Answer:
        language = language_of(question)
        informative = "프로토콜을 찾고 있습니다…" if language == "ko" else "Searching the protocols…"
        stream = await turn.start_stream(informative)
        hits = await self.retrieve(question, history)
        if not hits:
            answer = await self._not_covered(question, language)
        else:
            assert self.llm is not None
            stream_answer = self.llm.stream

            async def pump(prompt: list[ChatMessage]) -> str:
                return await self._pump(stream_answer(prompt), stream)

            answer = await self._generate(question, hits, language, history, pump)
        await stream.finish(await self._record(message, question, answer))
        return answer

    async def _pump(self, pieces: AsyncIterator[str], stream: Stream) -> str:
        text = ""
        last = 0.0
        async for piece in pieces:
            text += piece
            now = time.monotonic()
            if now - last >= self.options.stream_interval_s and not _may_be_sentinel(text):
                await stream.update(text)
                last = now
        return text

    def _finish(self, text: str, sources: Sequence[Source]) -> Answer | None:
        if is_not_covered(text):
            return None  # the model found nothing to say: quote the sections the retriever found instead
        finished = finish_generated(text, sources)
        if finished is None:
            log.warning("model answer carried no valid citation; answering with extracts")
            return None
        body, citations = finished
        return Answer(body, self._linked(citations), "generated")

    def _extractive(self, question: str, hits: list[Hit], language: str) -> Answer:
        text, citations = extractive_answer(question, hits, self.library.analyzer, language)
        return Answer(text, self._linked(citations), "extractive")

    def _linked(self, citations: list[Citation]) -> list[Citation]:
        base = self.options.documents_base_url
        if not base:
            return citations
        return [replace(c, url=base + quote(c.source)) for c in citations]

    async def _not_covered(self, question: str, language: str) -> Answer:
        closest = await self.library.retriever.search(question, 10)
        titles: list[str] = []
        for hit in closest:
            if hit.chunk.title not in titles and (hit.lexical > 0 or hit.dense > 0):
                titles.append(hit.chunk.title)
        return Answer(not_covered_text(language, titles[:3]), [], "not_covered")

    def _sources(self, hits: Sequence[Hit]) -> list[Source]:
        return [Source(i, h) for i, h in enumerate(hits[: self.options.max_sources], 1)]

    @staticmethod
    def _masked(history: Sequence[ChatTurn]) -> list[ChatTurn]:
        return [ChatTurn(mask_identifiers(t.question), t.answer) for t in history]

    async def _history(self, message: Message) -> list[ChatTurn]:
        record = await self.store.get(HISTORY, _history_key(message))
        if not record:
            return []
        cutoff = self.clock.now() - timedelta(minutes=self.options.history_minutes)
        turns = [t for t in record.get("turns", []) if str(t.get("at", "")) >= cutoff.isoformat()]
        return [ChatTurn(str(t["q"]), str(t["a"])) for t in turns][-self.options.history_turns :]

    async def _remember(self, message: Message, question: str, answer: Answer) -> None:
        if answer.mode in ("not_covered", "not_ready"):
            return
        key = _history_key(message)
        record = await self.store.get(HISTORY, key) or {"turns": []}
        turns = [
            *record.get("turns", []),
            {"q": question, "a": answer.text, "at": self.clock.now().isoformat()},
        ]
        await self.store.put(HISTORY, key, {"turns": turns[-self.options.history_turns :]})

    async def _record(self, message: Message, question: str, answer: Answer) -> Reply:
        record_id = uuid.uuid4().hex
        await self.store.put(
            ANSWERS,
            record_id,
            {
                "question": question,
                "answer": answer.text,
                "mode": answer.mode,
                "citations": [
                    {"position": c.position, "title": c.title, "section": c.section, "source": c.source}
                    for c in answer.citations
                ],
                "conversation": message.conversation.id,
                "user": message.user.id,
                "at": self.clock.now().isoformat(),
            },
        )
        return Reply(
            text=answer.text,
            citations=answer.citations,
            ai_generated=answer.ai_generated,
            feedback=answer.mode in ("generated", "extractive"),
            record_id=record_id,
            skill="protocols",
        )

    async def on_feedback(self, feedback: Feedback) -> None:
        """Store a vote against the answer it rates, with the question and the cited sections."""
        record = await self.store.get(ANSWERS, feedback.record_id)
        if record is None:
            log.warning("feedback for an unknown answer", extra={"record_id": feedback.record_id})
            return
        vote = {
            "record_id": feedback.record_id,
            "reaction": feedback.reaction,
            "comment": feedback.text,
            "user": feedback.user.id,
            "question": record.get("question"),
            "citations": record.get("citations"),
            "mode": record.get("mode"),
            "at": self.clock.now().isoformat(),
        }
        await self.store.append(FEEDBACK_STREAM, vote)
        votes = [*record.get("feedback", []), {k: vote[k] for k in ("reaction", "comment", "user", "at")}]
        await self.store.put(ANSWERS, feedback.record_id, {**record, "feedback": votes})


def library_loading_text(language: str) -> str:
    if language == "ko":
        return "프로토콜 라이브러리를 불러오는 중입니다. 잠시 후 다시 질문해 주세요."
    return "The protocol library is still loading. Please ask again in a minute."


def _may_be_sentinel(text: str) -> bool:
    """While a streamed answer could still turn out to be the NOT_COVERED sentinel, show nothing."""
    head = text.strip().upper()
    return NOT_COVERED.startswith(head) or head.startswith(NOT_COVERED)


def _history_key(message: Message) -> str:
    return f"{message.conversation.id}|{message.user.id}"
