"""Text analysis for lexical retrieval: English words are stemmed, Korean gets morphemes and Hangul bigrams."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import Stemmer

# A short English stop list: question words and function words that carry no topic.
_STOP_EN = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves s t don isn aren wasn weren doesn didn won shall may might
    must also per via""".split()
)
# Korean morpheme tags that carry content (nouns, verbs, adjectives, roots, hanja); Latin words and numbers
# are left to the English path so they are not counted twice.
_KIWI_TAGS = frozenset({"NNG", "NNP", "NNB", "NR", "VV", "VA", "XR", "SH"})
_KO_STOP = frozenset(
    {"하", "있", "되", "없", "않", "것", "수", "등", "및", "때", "경우", "이", "그", "저", "위하", "대하", "통하"}
    | {
        "어떻게",
        "언제",
        "무엇",
        "뭐",
        "얼마",
        "어디",
        "왜",
        "누가",
        "어느",
        "좀",
        "꼭",
        "다시",
        "방법",
        "시행",
    }  # how-to words
)
_HANGUL = re.compile(r"[\uac00-\ud7a3]+")
_HAS_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_WORD = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")


class Analyzer:
    """Turns text into index terms. Thread-safe; Kiwi is loaded on first Korean text only."""

    def __init__(self, *, korean_morphemes: bool = True, korean_bigrams: bool = True) -> None:
        self._stemmer = Stemmer.Stemmer("english")
        self._stem_lock = threading.Lock()
        self._korean_morphemes = korean_morphemes
        self._korean_bigrams = korean_bigrams

    @property
    def config(self) -> tuple[bool, bool]:
        """What changes the terms this analyzer produces (analyzers with the same config are interchangeable)."""
        return (self._korean_morphemes, self._korean_bigrams)

    def terms(self, text: str) -> list[str]:
        """Index terms of a text, in order, with repeats (term frequency matters)."""
        lowered = text.lower()
        terms = self._english(_HANGUL.sub(" ", lowered))
        if _HAS_HANGUL.search(lowered):
            terms.extend(self._korean(lowered))
        return terms

    def key_terms(self, text: str) -> list[str]:
        """The content words of a text (stems and Korean morphemes, no bigrams): what a question is about."""
        lowered = text.lower()
        terms = self._english(_HANGUL.sub(" ", lowered))
        if _HAS_HANGUL.search(lowered):
            morphemes = self._korean_morpheme_terms(lowered) if self._korean_morphemes else []
            terms.extend(morphemes or [t for t in self._korean(lowered) if t.startswith("#")])
        return terms

    def _english(self, text: str) -> list[str]:
        words = [w.replace("'", "") for w in _WORD.findall(text)]
        words = [w for w in words if w not in _STOP_EN]
        with self._stem_lock:
            return list(self._stemmer.stemWords(words))

    def _korean_morpheme_terms(self, text: str) -> list[str]:
        return [form for form, tag in _kiwi_tokens(text) if tag in _KIWI_TAGS and form not in _KO_STOP]

    def _korean(self, text: str) -> list[str]:
        terms: list[str] = self._korean_morpheme_terms(text) if self._korean_morphemes else []
        if self._korean_bigrams:
            for run in _HANGUL.findall(text):
                if len(run) == 1:
                    terms.append(run)
                terms.extend("#" + run[i : i + 2] for i in range(len(run) - 1))
        return terms


_kiwi_lock = threading.Lock()


@lru_cache(maxsize=1)
def _kiwi() -> Any:
    from kiwipiepy import Kiwi

    return Kiwi()


def _kiwi_tokens(text: str) -> Iterable[tuple[str, str]]:
    with _kiwi_lock:
        tokens = _kiwi().tokenize(text)
    return [(t.form, t.tag.split("-")[0]) for t in tokens]
