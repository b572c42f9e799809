"""Index terms of protocol sections kept in the Store, so a restart or `wardline ask` need not load Kiwi again.

Analysing every section (Kiwi morphemes for Korean) is most of what loading the library costs: about 4 s of CPU for
the bundled samples, against about 1 s for everything else `wardline ask` does. The terms depend only on the text and
on the analysis code, so they are stored under a fingerprint of both (the source of `skills/protocols/analysis.py`
and the versions of Kiwi and the stemmer): any change to either makes every stored list unused, never stale.

Only the terms of texts the library indexes (a section's heading line and its text, as the retriever reads them) are
written to the Store; questions and answer sentences that pass through the same analyzer are not.
"""

from __future__ import annotations

import hashlib
import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from skills.core.ports import Store
from skills.protocols import analysis
from skills.protocols.analysis import Analyzer
from skills.protocols.library import CHUNKS

SPACE = "wardline.terms"


def analyzer_fingerprint() -> str:
    """A digest of the analysis code and the libraries it runs on."""
    digest = hashlib.sha256(Path(analysis.__file__).read_bytes())
    for distribution in ("kiwipiepy", "kiwipiepy_model", "PyStemmer"):
        try:
            digest.update(f"{distribution}={version(distribution)};".encode())
        except PackageNotFoundError:
            digest.update(f"{distribution}=none;".encode())
    return digest.hexdigest()[:16]


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def indexed_texts(record: dict[str, object]) -> tuple[str, str]:
    """The two texts the retriever analyses for one stored section: its heading line and its body."""
    return f"{record.get('title', '')}\n{record.get('section', '')}", str(record.get("text", ""))


class StoredTermsAnalyzer(Analyzer):
    """An Analyzer that answers from terms loaded from the Store and remembers what it computes, for `save`."""

    def __init__(self, fingerprint: str | None = None) -> None:
        super().__init__()
        self.fingerprint = fingerprint or analyzer_fingerprint()
        self._known: dict[str, list[str]] = {}
        self._stored: set[str] = set()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def terms(self, text: str) -> list[str]:
        key = _text_key(text)
        with self._lock:
            cached = self._known.get(key)
            if cached is not None:
                self.hits += 1
                return list(cached)
        computed = super().terms(text)
        with self._lock:
            self.misses += 1
            self._known[key] = list(computed)
        return computed

    async def load(self, store: Store) -> int:
        """Read the stored term lists made by this same analysis code; returns how many."""
        prefix = f"{self.fingerprint}:"
        rows = await store.scan(SPACE, prefix)
        with self._lock:
            for key, value in rows:
                terms = value.get("t")
                if isinstance(terms, list):
                    self._known[key[len(prefix) :]] = [str(t) for t in terms]
                    self._stored.add(key[len(prefix) :])
        return len(rows)

    async def save(self, store: Store) -> int:
        """Store the term lists of the texts the library now indexes, dropping all others; returns how many."""
        wanted: set[str] = set()
        for _key, record in await store.scan(CHUNKS):
            wanted.update(_text_key(text) for text in indexed_texts(record))
        with self._lock:
            keep = {key: self._known[key] for key in wanted if key in self._known}
            unchanged = set(keep) == self._stored
        if unchanged:
            return len(keep)  # the usual case for a library that did not change: no write at all
        await store.replace_prefix(SPACE, "", [(f"{self.fingerprint}:{k}", {"t": v}) for k, v in keep.items()])
        with self._lock:
            self._stored = set(keep)
        return len(keep)
