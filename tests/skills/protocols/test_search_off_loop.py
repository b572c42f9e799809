"""Search runs its CPU-heavy parts (Kiwi analysis, scoring) off the event loop, and a huge question costs no more
than a paragraph: a pasted 0.8 MB Korean message does not stall a concurrent small request."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from skills.core.fakes import MemoryStore
from skills.protocols import SAMPLES
from skills.protocols.library import ProtocolLibrary

HUGE_KOREAN = "환자가 억제대를 하고 있는데 얼마나 자주 관찰해야 하나요? " * 24_000  # about 0.8 MB of UTF-8


@pytest.fixture(scope="module")
def samples() -> Path:
    return SAMPLES


async def max_loop_lag(task: asyncio.Task[object], tick: float = 0.01) -> float:
    """The longest the loop failed to wake a sleeper while `task` ran."""
    worst = 0.0
    while not task.done():
        started = time.perf_counter()
        await asyncio.sleep(tick)
        worst = max(worst, time.perf_counter() - started - tick)
    return worst


async def test_analysis_and_scoring_run_in_a_worker_thread(samples: Path) -> None:
    library = ProtocolLibrary(MemoryStore())
    await library.sync(samples)
    retriever = library.retriever
    threads: list[bool] = []
    analyse, rank = retriever._analyse, retriever._rank

    def watched_analyse(*args: object) -> object:
        threads.append(threading.current_thread() is threading.main_thread())
        return analyse(*args)  # type: ignore[arg-type]

    def watched_rank(*args: object) -> object:
        threads.append(threading.current_thread() is threading.main_thread())
        return rank(*args)  # type: ignore[arg-type]

    retriever._analyse = watched_analyse  # type: ignore[method-assign,assignment]
    retriever._rank = watched_rank  # type: ignore[method-assign,assignment]
    assert await retriever.search("억제대 관찰 간격", 3)
    assert threads == [False, False]  # neither ran on the event loop's thread


async def test_a_huge_question_does_not_stall_a_small_one(samples: Path) -> None:
    library = ProtocolLibrary(MemoryStore())
    await library.sync(samples)
    await library.retriever.search("억제대", 1)  # Kiwi and the glossary are loaded: measure the search alone
    huge = asyncio.create_task(library.retriever.search(HUGE_KOREAN, 5))
    small_started = time.perf_counter()
    small = await library.retriever.search("How often are restraints reviewed?", 3)
    small_seconds = time.perf_counter() - small_started
    lag = await max_loop_lag(huge)
    assert (await huge) and small
    assert lag < 0.5  # generous: the machine is shared; unguarded, this question stalls the loop for ~10 s
    assert small_seconds < 2.0


async def test_a_huge_question_is_analysed_only_up_to_the_cap(samples: Path) -> None:
    library = ProtocolLibrary(MemoryStore())
    await library.sync(samples)
    await library.retriever.search("억제대", 1)
    started = time.perf_counter()
    hits = await library.retriever.search(HUGE_KOREAN, 5)
    assert time.perf_counter() - started < 3.0
    assert hits[0].chunk.source == "physical-restraints-ko.md"
