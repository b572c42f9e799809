"""Cut documents into retrievable chunks: one per section, long sections split on paragraph boundaries."""

from __future__ import annotations

import re
from dataclasses import dataclass

from skills.protocols.documents import Document

_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|(?<=다\.)\s+|\n")


@dataclass(frozen=True, slots=True)
class Chunk:
    """The unit of retrieval and citation."""

    key: str  # unique: "<source>#<ordinal>"
    source: str
    title: str
    section: str  # heading path joined with " › "
    text: str
    ordinal: int
    version: str = ""
    language: str = ""

    @property
    def label(self) -> str:
        """What a citation shows: "Title › Section"."""
        return f"{self.title} › {self.section}" if self.section and self.section != self.title else self.title

    def to_record(self) -> dict[str, str | int]:
        return {
            "source": self.source,
            "title": self.title,
            "section": self.section,
            "text": self.text,
            "ordinal": self.ordinal,
            "version": self.version,
            "language": self.language,
        }

    @classmethod
    def from_record(cls, key: str, record: dict[str, object]) -> Chunk:
        return cls(
            key=key,
            source=str(record["source"]),
            title=str(record["title"]),
            section=str(record["section"]),
            text=str(record["text"]),
            ordinal=int(str(record["ordinal"])),
            version=str(record.get("version", "")),
            language=str(record.get("language", "")),
        )


def chunk_document(document: Document, *, max_chars: int = 1500) -> list[Chunk]:
    """Chunks of a document in reading order."""
    chunks: list[Chunk] = []
    for section in document.sections:
        name = " › ".join(section.path) if section.path else document.title
        for piece in split_text(section.text, max_chars):
            chunks.append(
                Chunk(
                    key=f"{document.source}#{len(chunks):04d}",
                    source=document.source,
                    title=document.title,
                    section=name,
                    text=piece,
                    ordinal=len(chunks),
                    version=document.meta.get("version", ""),
                    language=document.meta.get("language", ""),
                )
            )
    return chunks


def split_text(text: str, max_chars: int) -> list[str]:
    """Split on blank lines, then sentences, so no piece is much longer than max_chars."""
    if len(text) <= max_chars:
        return [text]
    units: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        if len(paragraph) <= max_chars:
            units.append(paragraph)
        else:
            units.extend(s for s in _SENTENCE_END.split(paragraph) if s.strip())
    pieces: list[str] = []
    current = ""
    for unit in units:
        if current and len(current) + len(unit) + 2 > max_chars:
            pieces.append(current)
            current = ""
        current = f"{current}\n\n{unit}" if current else unit
        while len(current) > max_chars * 2:  # a single unbroken run: cut hard
            pieces.append(current[:max_chars])
            current = current[max_chars:]
    if current.strip():
        pieces.append(current)
    return pieces
