"""Protocol answers: the hospital's protocols, retrieved and cited, in Korean or English."""

from __future__ import annotations

import logging
from pathlib import Path

from skills.core.skill import Command, Context, Job, Skill
from skills.protocols.assistant import AssistantOptions, ProtocolAssistant
from skills.protocols.library import ProtocolLibrary

log = logging.getLogger(__name__)

SAMPLES = Path(__file__).parent / "samples"


def create_skill(context: Context, library: ProtocolLibrary, folder: Path) -> Skill:
    """The protocol skill: `ask` and free text are questions; the folder is re-synced on a schedule."""
    options = context.options
    assistant = ProtocolAssistant(
        library,
        context.store,
        context.clock,
        context.llm,
        AssistantOptions(
            answer_timeout_s=float(options.get("answer_timeout_s", 8.0)),
            stream_interval_s=float(options.get("stream_interval_s", 1.2)),
            documents_base_url=str(options.get("documents_base_url", "")),
            max_question_chars=int(options.get("max_question_chars", 2000)),
            retention_days=int(options.get("retention_days", 30)),
            emergency_text=str(options.get("emergency_text", "")),
            emergency_text_ko=str(options.get("emergency_text_ko", "")),
        ),
        names=context.directory.known_names if context.directory is not None else None,
    )

    async def resync() -> None:
        report = await library.sync(folder, wait_for_vectors=False)  # lexical now, vectors join in the background
        if report.changed or report.failed:
            log.info(
                "protocol library synced",
                extra={
                    "added": len(report.added),
                    "updated": len(report.updated),
                    "removed": len(report.removed),
                    "failed": len(report.failed),
                },
            )

    async def refresh() -> None:
        await library.refresh()  # one small read; a reload only when another replica changed the library

    async def health() -> dict[str, object]:
        return library.status()

    jobs = []
    interval = int(options.get("resync_seconds", 900))
    if interval > 0:
        jobs.append(Job(id="protocols.resync", func=resync, interval_seconds=interval, misfire_grace_seconds=interval))

    async def retention() -> None:
        await assistant.purge_expired()

    # Retention: masked questions, answers and histories older than retention_days go, nightly, on the leader only.
    jobs.append(
        Job(
            id="protocols.retention",
            func=retention,
            cron={"hour": "3", "minute": "17"},
            misfire_grace_seconds=6 * 3600,
        )
    )
    check = int(options.get("library_check_seconds", 5))
    if check > 0:
        jobs.append(
            Job(
                id="protocols.refresh",
                func=refresh,
                interval_seconds=check,
                misfire_grace_seconds=check,
                every_replica=True,
            )
        )
    return Skill(
        name="protocols",
        description="Answers from the hospital's protocols, with numbered sources",
        commands=[
            Command(
                name="ask",
                aliases=("질문",),
                usage="<question>",
                description="Ask a protocol question (or just type it)",
                description_ko="프로토콜 질문하기 (그냥 질문을 입력해도 됩니다)",
                handler=assistant.respond,
            ),
        ],
        fallback=assistant.respond,
        on_feedback=assistant.on_feedback,
        jobs=jobs,
        startup=resync,
        health=health,
    )


__all__ = ["SAMPLES", "AssistantOptions", "ProtocolAssistant", "ProtocolLibrary", "create_skill"]
