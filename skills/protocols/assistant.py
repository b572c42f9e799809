"""Answers protocol questions: retrieve, then generate with citations, quote, or say it is not covered."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
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
    released_text,
)
from skills.protocols.emergency import is_emergency
from skills.protocols.library import ProtocolLibrary
from skills.protocols.retrieval import Hit
from skills.protocols.texts import TEXTS

log = logging.getLogger(__name__)

FOLLOW_UP_MAX_TERMS = 3  # a question with more content words than this stands on its own
# "Closest protocols" in a refusal must be related to the question, though less than an answerable section:
# this share of the coverage (or similarity) bar. Measured on the samples with the concept coverage of the
# bilingual glossary: "capital of France for a patient" 0.035 and "rattlesnake bite in a dog" 0.089; near misses
# ("septic shock in pregnancy obstetric") 0.21-0.28. Known gap: "best pizza near the hospital" reaches 0.35.
CLOSEST_SHARE = 0.5
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
    max_question_chars: int = 2000  # Teams allows ~28 KB; a protocol question is a sentence or two
    retention_days: int = 30  # masked questions, answers and history older than this are purged
    emergency_text: str = ""  # the hospital's own instruction (English); empty: a generic one
    emergency_text_ko: str = ""


@dataclass(slots=True)
class Answer:
    """The outcome of one question."""

    text: str
    citations: list[Citation]
    mode: str  # "generated", "extractive", "not_covered", "not_ready" or "too_long"

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
        names: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.library = library
        self.store = store
        self.clock = clock
        self.llm = llm
        self.options = options or AssistantOptions()
        self.names = names or (lambda: ())  # people's names to mask (directory, handover rosters)

    def mask(self, text: str) -> str:
        """The text as it may be stored or sent out: identifiers and known names replaced by placeholders."""
        return mask_identifiers(text, self.names())

    def emergency_text(self, language: str) -> str:
        """The hospital's emergency instruction in the question's language."""
        configured = self.options.emergency_text_ko if language == "ko" else self.options.emergency_text
        return configured or TEXTS[language]["emergency"]

    async def retrieve(
        self, question: str, history: Sequence[ChatTurn] = (), previous_sources: Collection[str] = ()
    ) -> list[Hit]:
        """Covered hits for the question; a short follow-up may borrow the previous question's words.

        Only masked text is searched (the embedder may be a cloud service). A follow-up borrows context only for
        sections of the protocols the previous answer cited that the new question alone also passes the coverage
        test for: an unrelated question never looks covered because of what was asked before.
        """
        retriever = await self.library.current()  # reloads first when another replica changed the library
        question = without_identifiers(question, self.names())
        hits = await retriever.search(question, self.options.top_k)
        covered = retriever.answerable(hits)
        if not covered and history and sum(retriever.key_terms(question).values()) <= FOLLOW_UP_MAX_TERMS:
            previous = without_identifiers(history[-1].question, self.names())
            hits = await retriever.search(f"{previous} {question}", self.options.top_k)
            own = retriever.coverage_of(question, hits)
            bar = retriever.settings.min_coverage
            covered = [
                h
                for h, mine in zip(hits, own, strict=True)
                if retriever.is_covered(h) and mine >= bar and h.chunk.source in previous_sources
            ]
        return covered

    async def answer(self, question: str, history: Sequence[ChatTurn] = ()) -> Answer:
        """One answer without streaming (the command line); an emergency instruction comes first in the text."""
        answer = await self._answer(question, history, ())
        if answer.mode != "too_long" and is_emergency(question):
            answer.text = f"{self.emergency_text(language_of(question))}\n\n{answer.text}"
        return answer

    async def _answer(self, question: str, history: Sequence[ChatTurn], previous_sources: Collection[str]) -> Answer:
        language = language_of(question)
        if len(question) > self.options.max_question_chars:
            return self._too_long(question, language)
        if not self.library.retriever.chunks:
            return Answer(library_loading_text(language), [], "not_ready")
        hits = await self.retrieve(question, history, previous_sources)
        if not hits:
            return await self._not_covered(question, language)
        if self.llm is None:
            return self._extractive(question, hits, language)
        related = _related_history(history, previous_sources, hits)
        return await self._generate(question, hits, language, related, self.llm.complete)

    def _too_long(self, question: str, language: str) -> Answer:
        text = TEXTS[language]["too_long"].format(length=len(question), limit=self.options.max_question_chars)
        return Answer(text, [], "too_long")

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
        prompt = build_prompt(self.mask(question), sources, language, self._masked(history))
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
        language = language_of(question[: self.options.max_question_chars] or message.text)
        if not question:
            await turn.send(Reply(text=TEXTS[language]["empty_question"], skill="protocols"))
            return
        if len(question) > self.options.max_question_chars:
            await turn.send(Reply(text=self._too_long(question, language).text, skill="protocols"))
            return  # never searched, never stored
        if is_emergency(question):  # before any search: nothing may delay this line
            await turn.send(Reply(text=self.emergency_text(language), skill="protocols"))
        history, previous_sources = await self._history(message)
        if self.llm is not None and turn.can_stream and self.library.retriever.chunks:
            answer = await self._answer_streaming(message, question, history, previous_sources, turn)
        else:
            await turn.typing()
            answer = await self._answer(question, history, previous_sources)
            await turn.send(await self._record(message, question, answer))
        await self._remember(message, question, answer)

    async def _answer_streaming(
        self,
        message: Message,
        question: str,
        history: Sequence[ChatTurn],
        previous_sources: Collection[str],
        turn: Turn,
    ) -> Answer:
        language = language_of(question)
        stream = await turn.start_stream(TEXTS[language]["searching"])
        hits = await self.retrieve(question, history, previous_sources)
        if not hits:
            answer = await self._not_covered(question, language)
        else:
            assert self.llm is not None
            stream_answer = self.llm.stream
            sources = self._sources(hits)

            async def pump(prompt: list[ChatMessage]) -> str:
                return await self._pump(stream_answer(prompt), stream, sources)

            related = _related_history(history, previous_sources, hits)
            answer = await self._generate(question, hits, language, related, pump)
        await stream.finish(await self._record(message, question, answer))
        return answer

    async def _pump(self, pieces: AsyncIterator[str], stream: Stream, sources: Sequence[Source]) -> str:
        """Collect the model's answer; show only finished sentences that passed the final answer's checks."""
        text = ""
        shown = ""
        last = 0.0
        blocked = False
        analyzer = self.library.analyzer
        async for piece in pieces:
            text += piece
            now = time.monotonic()
            if blocked or now - last < self.options.stream_interval_s or _may_be_sentinel(text):
                continue
            safe = released_text(text, sources, analyzer)
            if safe is None:
                blocked = True  # a cited sentence failed its check: nothing more is shown before the final
            elif safe and safe != shown:
                await stream.update(safe)
                shown, last = safe, now
        return text

    def _finish(self, text: str, sources: Sequence[Source]) -> Answer | None:
        if is_not_covered(text):
            return None  # the model found nothing to say: quote the sections the retriever found instead
        finished = finish_generated(text, sources, self.library.analyzer)
        if finished is None:
            log.warning("model answer failed the citation or support checks; answering with extracts")
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
        """Say so honestly; list protocols only when they pass a weaker relatedness test than an answer needs."""
        retriever = self.library.retriever
        closest = await retriever.search(without_identifiers(question, self.names()), 10)
        min_coverage = retriever.settings.min_coverage * CLOSEST_SHARE
        floor = retriever.similarity_floor  # None: the model's similarity never decides relatedness alone
        min_similarity = floor * CLOSEST_SHARE if floor is not None else 0.0
        titles: list[str] = []
        for hit in closest:
            related = (hit.lexical > 0 and hit.coverage >= min_coverage) or (hit.dense >= min_similarity > 0)
            if related and hit.chunk.title not in titles:
                titles.append(hit.chunk.title)
        return Answer(not_covered_text(language, titles[:3]), [], "not_covered")

    def _sources(self, hits: Sequence[Hit]) -> list[Source]:
        return [Source(i, h) for i, h in enumerate(hits[: self.options.max_sources], 1)]

    def _masked(self, history: Sequence[ChatTurn]) -> list[ChatTurn]:
        return [ChatTurn(self.mask(t.question), self.mask(t.answer)) for t in history]

    async def _history(self, message: Message) -> tuple[list[ChatTurn], set[str]]:
        """Recent turns of this user in this conversation, and the documents the last answer cited."""
        record = await self.store.get(HISTORY, _history_key(message))
        if not record:
            return [], set()
        cutoff = self.clock.now() - timedelta(minutes=self.options.history_minutes)
        turns = [t for t in record.get("turns", []) if str(t.get("at", "")) >= cutoff.isoformat()]
        turns = turns[-self.options.history_turns :]
        sources = {str(s) for s in turns[-1].get("sources", [])} if turns else set()
        return [ChatTurn(str(t["q"]), str(t["a"])) for t in turns], sources

    async def _remember(self, message: Message, question: str, answer: Answer) -> None:
        if answer.mode in ("not_covered", "not_ready", "too_long"):
            return
        key = _history_key(message)
        record = await self.store.get(HISTORY, key) or {"turns": []}
        turns = [
            *record.get("turns", []),
            {
                "q": self.mask(question),
                "a": self.mask(answer.text),
                "sources": sorted({c.source for c in answer.citations}),
                "at": self.clock.now().isoformat(),
            },
        ]
        await self.store.put(HISTORY, key, {"turns": turns[-self.options.history_turns :]})

    async def _record(self, message: Message, question: str, answer: Answer) -> Reply:
        record_id = uuid.uuid4().hex
        await self.store.put(
            ANSWERS,
            record_id,
            {
                "question": self.mask(question),
                "answer": self.mask(answer.text),
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
        """Store a vote against the answer it rates, with the (masked) question and the cited sections."""
        record = await self.store.get(ANSWERS, feedback.record_id)
        if record is None:
            log.warning("feedback for an unknown answer", extra={"record_id": feedback.record_id})
            return
        vote = {
            "record_id": feedback.record_id,
            "reaction": feedback.reaction,
            "comment": self.mask(feedback.text),
            "user": feedback.user.id,
            "question": record.get("question"),
            "citations": record.get("citations"),
            "mode": record.get("mode"),
            "at": self.clock.now().isoformat(),
        }
        await self.store.append(FEEDBACK_STREAM, vote)
        votes = [*record.get("feedback", []), {k: vote[k] for k in ("reaction", "comment", "user", "at")}]
        await self.store.put(ANSWERS, feedback.record_id, {**record, "feedback": votes})

    async def purge(self, before: datetime) -> int:
        """Delete stored answers and chat histories last written before `before` (retention); returns the count."""
        return await purge_answers(self.store, before)

    async def purge_expired(self) -> int:
        """The retention job: purge what is older than `retention_days`."""
        removed = await self.purge(self.clock.now() - timedelta(days=self.options.retention_days))
        if removed:
            log.info("expired answers and histories purged", extra={"removed": removed})
        return removed


async def purge_answers(store: Store, before: datetime) -> int:
    """Delete the protocol skill's answers and chat histories last written before `before`; returns the count."""
    cutoff = before.astimezone(UTC).isoformat()  # records are stamped by the clock in UTC
    removed = 0
    for namespace, stamp in ((ANSWERS, _answer_time), (HISTORY, _history_time)):
        for key, value in await store.scan(namespace):
            if stamp(value) < cutoff and await store.delete(namespace, key):
                removed += 1
    return removed


def _answer_time(record: dict[str, object]) -> str:
    return str(record.get("at", ""))


def _history_time(record: dict[str, object]) -> str:
    turns = record.get("turns")
    if isinstance(turns, list) and turns and isinstance(turns[-1], dict):
        return str(turns[-1].get("at", ""))
    return ""


def _related_history(
    history: Sequence[ChatTurn], previous_sources: Collection[str], hits: Sequence[Hit]
) -> Sequence[ChatTurn]:
    """Earlier turns go to the model only when this answer draws on a protocol the last answer cited."""
    if history and any(h.chunk.source in previous_sources for h in hits):
        return history
    return ()


def library_loading_text(language: str) -> str:
    return TEXTS["ko" if language == "ko" else "en"]["loading"]


def _may_be_sentinel(text: str) -> bool:
    """While a streamed answer could still turn out to be the NOT_COVERED sentinel, show nothing."""
    head = text.strip().upper()
    return NOT_COVERED.startswith(head) or head.startswith(NOT_COVERED)


def _history_key(message: Message) -> str:
    return f"{message.conversation.id}|{message.user.id}"
