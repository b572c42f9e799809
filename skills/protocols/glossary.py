"""Korean-English term bridging for the lexical side: a curated clinical glossary applied to questions both ways.

"패혈성 쇼크" in a question also looks for "septic shock", and "pressure injury" also for "욕창", so a question finds
a protocol written in the other language without a dense model, and the coverage test can see that the section
speaks to the question's concepts in either language. The table is `data/glossary-ko-en.txt` (sources named there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from skills.protocols.analysis import Analyzer

GLOSSARY_FILE = Path(__file__).parent / "data" / "glossary-ko-en.txt"

Terms = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Concept:
    """One thing a question asks about, with every way of writing it that counts (each a tuple of index terms)."""

    alternatives: tuple[Terms, ...]
    expansion: tuple[str, ...] = ()  # extra BM25 terms: the other forms (with Korean bigrams), not in the question
    bridged: bool = False  # True when a glossary entry matched
    specific: bool = False  # a clinical topic ("central line"), not a generic word ("patient", "check")

    @property
    def terms(self) -> set[str]:
        return {t for alt in self.alternatives for t in alt}


@dataclass(frozen=True, slots=True)
class Entry:
    """A glossary line: Korean and English forms of one concept."""

    korean: tuple[str, ...]
    english: tuple[str, ...]
    generic: bool = False  # marked "~" in the file: common ward words that name no topic on their own


def read_glossary(path: Path = GLOSSARY_FILE) -> list[Entry]:
    """Parse the glossary file: `korean|forms<TAB>english|forms`, `#` comments."""
    entries: list[Entry] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        generic = line.startswith("~")
        korean, sep, english = line.lstrip("~").partition("\t")
        if not sep:
            raise ValueError(f"{path.name}:{number}: expected Korean forms, a tab, English forms")
        ko = tuple(f.strip() for f in korean.split("|") if f.strip())
        en = tuple(f.strip() for f in english.split("|") if f.strip())
        if not ko or not en:
            raise ValueError(f"{path.name}:{number}: both languages need at least one form")
        entries.append(Entry(ko, en, generic))
    return entries


class Bridge:
    """Finds glossary concepts in a question's analysed terms (longest match first) in either language."""

    def __init__(self, analyzer: Analyzer, entries: Sequence[Entry] | None = None) -> None:
        self.analyzer = analyzer
        # pattern (a tuple of key terms) -> (alternatives, expansion terms)
        self._patterns: dict[Terms, list[int]] = {}
        self._alternatives: list[tuple[Terms, ...]] = []
        self._expansions: list[tuple[str, ...]] = []
        self._specific: list[bool] = []
        for entry in entries if entries is not None else _default_entries():
            forms = [*entry.korean, *entry.english]
            keyed = [tuple(analyzer.key_terms(f)) for f in forms]
            alternatives = tuple(dict.fromkeys(k for k in keyed if k))
            if not alternatives:
                continue
            index = len(self._alternatives)
            self._alternatives.append(alternatives)
            expansion: list[str] = []
            for form in forms:
                expansion.extend(analyzer.terms(form))
            self._expansions.append(tuple(dict.fromkeys(expansion)))
            self._specific.append(not entry.generic)
            for pattern in alternatives:
                self._patterns.setdefault(pattern, []).append(index)
        self._longest = max((len(p) for p in self._patterns), default=0)

    def concepts(self, key_terms: Sequence[str]) -> list[Concept]:
        """The question's concepts: glossary matches (all their forms) and every other key term on its own."""
        concepts: list[Concept] = []
        i = 0
        terms = list(key_terms)
        while i < len(terms):
            for size in range(min(self._longest, len(terms) - i), 0, -1):
                pattern = tuple(terms[i : i + size])
                indexes = self._patterns.get(pattern)
                if indexes:
                    alternatives = tuple(dict.fromkeys(a for n in indexes for a in self._alternatives[n]))
                    own = set(pattern)
                    expansion = tuple(dict.fromkeys(t for n in indexes for t in self._expansions[n] if t not in own))
                    specific = any(self._specific[n] for n in indexes)
                    concepts.append(Concept(alternatives, expansion, bridged=True, specific=specific))
                    i += size
                    break
            else:
                concepts.append(Concept(((terms[i],),)))
                i += 1
        return concepts


@lru_cache(maxsize=1)
def _default_entries() -> tuple[Entry, ...]:
    return tuple(read_glossary())
