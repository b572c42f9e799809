"""Protocol documents: read Markdown, plain text, HTML, PDF and DOCX into titled sections."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

SUPPORTED_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx"})
NOT_A_PROTOCOL = "<!-- wardline: not-a-protocol -->"
META_KEYS = ("id", "title", "version", "effective", "owner", "department", "language", "sources")


class DocumentError(Exception):
    """A file could not be read as a protocol; the message says why."""


@dataclass(frozen=True, slots=True)
class Section:
    """A run of text under one heading path, e.g. ("Sepsis bundle", "Treatment", "Vasopressors")."""

    path: tuple[str, ...]
    text: str


@dataclass(slots=True)
class Document:
    """A protocol: its metadata (front matter or document properties) and its sections in order."""

    source: str  # path relative to the library folder, with forward slashes
    title: str
    sections: list[Section]
    meta: dict[str, str] = field(default_factory=dict)
    content_hash: str = ""

    @property
    def language(self) -> str:
        return self.meta.get("language", "")


def content_hash(data: bytes) -> str:
    """A stable fingerprint of a file's bytes, to re-ingest only what changed."""
    return hashlib.sha256(data).hexdigest()


def iter_protocol_files(folder: Path) -> Iterator[Path]:
    """Every supported file below folder, sorted, skipping hidden files and folders."""
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith((".", "_", "~$")) for part in relative.parts):
            continue
        if path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES:
            yield path


def load_document(path: Path, source: str) -> Document | None:
    """Read one file. Returns None for files marked not-a-protocol; raises DocumentError on unreadable ones."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"cannot read {source}: {exc.strerror}") from exc
    suffix = path.suffix.lower()
    try:
        if suffix in (".md", ".markdown", ".txt", ".html", ".htm"):
            text = _decode(data, source)
            if text.lstrip().startswith(NOT_A_PROTOCOL):
                return None
            meta, body = split_front_matter(text)
            if suffix == ".txt":
                title_line, sections = _plain_sections(body)
                if title_line:
                    meta.setdefault("title", title_line)
            elif suffix in (".html", ".htm"):
                sections, html_meta = _html_sections(body)
                meta = {**html_meta, **meta}
            else:
                sections = _markdown_sections(body)
        elif suffix == ".pdf":
            meta, sections = _pdf(data, source)
        elif suffix == ".docx":
            meta, sections = _docx(data, source)
        else:
            raise DocumentError(f"{source}: unsupported file type {suffix}")
    except DocumentError:
        raise
    except Exception as exc:  # parsers raise many types; one clear error per file is what operators need
        raise DocumentError(f"{source}: cannot parse {suffix} file ({type(exc).__name__})") from exc
    sections = [s for s in sections if s.text.strip()]
    title = meta.get("title") or _first_heading(sections) or Path(source).stem.replace("-", " ").replace("_", " ")
    sections = [_drop_leading_title(s, title) for s in sections]
    if not sections:
        raise DocumentError(f"{source}: no text found")
    return Document(source=source, title=title, sections=sections, meta=meta, content_hash=content_hash(data))


def _decode(data: bytes, source: str) -> str:
    for encoding in ("utf-8-sig", "cp949"):  # cp949: Korean Windows exports are common in hospitals
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DocumentError(f"{source}: not UTF-8 or CP949 text")


def split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """Split a leading `---` block of `key: value` lines from the body."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return {}, text
    for end in range(1, min(len(lines), 60)):
        if lines[end].strip() in ("---", "..."):
            meta: dict[str, str] = {}
            for line in lines[1:end]:
                key, sep, value = line.partition(":")
                if sep and key.strip():
                    meta[key.strip().lower().replace(" ", "_")] = value.strip().strip("\"'")
            if "effective_date" in meta and "effective" not in meta:
                meta["effective"] = meta.pop("effective_date")
            return meta, "\n".join(lines[end + 1 :])
    return {}, text


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _markdown_sections(body: str) -> list[Section]:
    sections: list[Section] = []
    path: list[str] = []
    buffer: list[str] = []
    in_fence = False

    def flush() -> None:
        text = "\n".join(buffer).strip()
        if text:
            sections.append(Section(tuple(path), _clean_markdown(text)))
        buffer.clear()

    for line in body.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _MD_HEADING.match(line)
        if match:
            flush()
            level = len(match.group(1))
            del path[level - 1 :]
            path.extend([""] * (level - 1 - len(path)))
            path.append(_clean_markdown(match.group(2)))
        else:
            buffer.append(line)
    flush()
    return [Section(tuple(p for p in s.path if p), s.text) for s in sections]


def _clean_markdown(text: str) -> str:
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)  # links: keep the words
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    text = re.sub(r"^\s*>\s?", "", text, flags=re.MULTILINE)
    return text.strip()


# "2.1 Braden scale", "3. 목적": at most two digits per level, then a capital or non-Latin letter (not "500 mL ...").
_NUMBERED_HEADING = re.compile(r"^(\d{1,2}(?:\.\d{1,2})*)\.?\s+([^\W\d_a-z].{0,80})$")


def _heading_level(line: str) -> tuple[int, str] | None:
    """Headings in plain text: `2.1 Dose` style numbering, or short ALL-CAPS lines."""
    stripped = line.strip()
    match = _NUMBERED_HEADING.match(stripped)
    if match and not stripped.endswith((".", ",", ";", ":")) and len(stripped.split()) <= 12:
        return match.group(1).count(".") + 2, stripped
    letters = [c for c in stripped if c.isalpha()]
    if len(letters) >= 3 and len(stripped) <= 80 and all(c.isupper() for c in letters):
        return 2, stripped.title() if stripped.isascii() else stripped
    return None


def _plain_sections(body: str) -> tuple[str, list[Section]]:
    """Sections of plain text, and its title line: the first unnumbered heading before any text."""
    sections: list[Section] = []
    path: list[str] = []
    buffer: list[str] = []
    title = ""

    def flush() -> None:
        text = "\n".join(buffer).strip()
        if text:
            sections.append(Section(tuple(p for p in path if p), text))
        buffer.clear()

    for line in body.splitlines():
        heading = _heading_level(line)
        if heading is None:
            buffer.append(line)
            continue
        level, text = heading
        first_line_of_text = not title and not sections and not path and not "".join(buffer).strip()
        if first_line_of_text and not _NUMBERED_HEADING.match(line.strip()):
            title = text
            continue
        flush()
        del path[level - 2 :]
        path.extend([""] * (level - 2 - len(path)))
        path.append(text)
    flush()
    return title, sections


_HIDDEN_STYLE = re.compile(r"(?i)(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*hidden)\b")
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
)
# A <p> or <li> closes implicitly when one of these starts (HTML's optional end tags).
_IMPLIED_END = {
    "p": frozenset({"p", "div", "ul", "ol", "table", "section", "article", "blockquote", "pre", "hr", "form"})
    | frozenset(f"h{n}" for n in range(1, 7)),
    "li": frozenset({"li"}),
}


def _is_hidden(attrs: list[tuple[str, str | None]]) -> bool:
    """Whether an element is invisible to readers: `hidden`, `aria-hidden="true"`, or display:none in its style."""
    for name, value in attrs:
        name = name.lower()
        if name == "hidden":
            return True
        if name == "aria-hidden" and (value or "").strip().lower() == "true":
            return True
        if name == "style" and value and _HIDDEN_STYLE.search(value):
            return True
    return False


class _HtmlSectioner(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "nav", "footer", "template"})
    _BLOCK = frozenset({"p", "li", "tr", "div", "br", "section", "article", "dd", "dt", "blockquote"})
    _CELL = frozenset({"td", "th"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self.meta: dict[str, str] = {}
        self._path: list[str] = []
        self._buffer: list[str] = []
        self._heading: list[str] | None = None
        self._heading_level = 0
        self._skip_depth = 0
        self._in_title = False
        self._title: list[str] = []
        self._hidden_tag = ""  # the element whose text readers cannot see, while inside it
        self._hidden_depth = 0  # open elements of that name inside it

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._hidden_tag:  # inside hidden text: only track where it ends
            if tag in _IMPLIED_END.get(self._hidden_tag, ()) and self._hidden_depth == 1:
                self._hidden_tag, self._hidden_depth = "", 0  # the hidden <p> ended implicitly: read on
            elif tag == self._hidden_tag:
                self._hidden_depth += 1
                return
            else:
                return
        if tag not in _VOID and _is_hidden(attrs):
            self._hidden_tag, self._hidden_depth = tag, 1
            return
        self._visible_starttag(tag, attrs)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self._hidden_tag and not _is_hidden(attrs):  # a self-closed hidden element has no text to drop
            self.handle_starttag(tag, attrs)
            self.handle_endtag(tag)

    def _visible_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            values = dict(attrs)
            name, content = (values.get("name") or "").lower(), values.get("content") or ""
            if name.startswith("wardline:") and content:
                self.meta[name.removeprefix("wardline:")] = content
        if tag == "html":
            lang = dict(attrs).get("lang")
            if lang:
                self.meta.setdefault("language", lang.split("-")[0])
        if tag == "title":
            self._in_title = True
        if tag in self._SKIP:
            self._skip_depth += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._heading = []
            self._heading_level = int(tag[1])
        elif tag in self._BLOCK:
            self._buffer.append("\n")
            if tag == "li":
                self._buffer.append("- ")
        elif tag in self._CELL:
            self._buffer.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if self._hidden_tag:
            if tag == self._hidden_tag:
                self._hidden_depth -= 1
                if self._hidden_depth == 0:
                    self._hidden_tag = ""
            return
        if tag == "title":
            self._in_title = False
        if tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            title = " ".join("".join(self._heading).split())
            level = self._heading_level
            del self._path[level - 1 :]
            self._path.extend([""] * (level - 1 - len(self._path)))
            self._path.append(title)
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._hidden_tag:
            return
        if self._in_title:
            self._title.append(data)
        if self._skip_depth:
            return
        if self._heading is not None:
            self._heading.append(data)
        else:
            self._buffer.append(data)

    def _flush(self) -> None:
        lines = [" ".join(line.split()) for line in "".join(self._buffer).splitlines()]
        text = "\n".join(line for line in lines if line.strip(" |-"))
        if text.strip():
            self.sections.append(Section(tuple(p for p in self._path if p), text.strip()))
        self._buffer.clear()

    def close(self) -> None:
        super().close()
        self._flush()
        title = " ".join("".join(self._title).split())
        if title:
            self.meta.setdefault("title", title)


def _html_sections(body: str) -> tuple[list[Section], dict[str, str]]:
    parser = _HtmlSectioner()
    parser.feed(body)
    parser.close()
    return parser.sections, parser.meta


def _pdf(data: bytes, source: str) -> tuple[dict[str, str], list[Section]]:
    import io

    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        raise DocumentError(f"{source}: PDF is encrypted")
    meta: dict[str, str] = {}
    info = reader.metadata
    if info is not None:
        if info.title:
            meta["title"] = str(info.title)
        if info.author:
            meta["owner"] = str(info.author)
        if info.subject:
            meta["department"] = str(info.subject)
    pages = [page.extract_text() or "" for page in reader.pages]
    text = "\n".join(pages)
    front, body = split_front_matter(text)
    meta = {**meta, **front}
    title_line, sections = _plain_sections(body)
    if title_line:
        meta.setdefault("title", title_line)
    if not any(s.path for s in sections):  # no headings found: cite by page instead
        sections = [Section((f"Page {i + 1}",), p) for i, p in enumerate(pages) if p.strip()]
    return meta, sections


def _docx(data: bytes, source: str) -> tuple[dict[str, str], list[Section]]:
    import io

    import docx

    document = docx.Document(io.BytesIO(data))
    props = document.core_properties
    meta: dict[str, str] = {}
    for key, value in (
        ("title", props.title),
        ("owner", props.author),
        ("version", props.version),
        ("department", props.category),
        ("language", props.language),
    ):
        if value:
            meta[key] = str(value)
    sections: list[Section] = []
    path: list[str] = []
    buffer: list[str] = []

    def flush() -> None:
        text = "\n".join(buffer).strip()
        if text:
            sections.append(Section(tuple(p for p in path if p), text))
        buffer.clear()

    for block in _docx_blocks(document):
        style, text = block
        level = _docx_heading_level(style)
        if level is not None and text.strip():
            flush()
            del path[level - 1 :]
            path.extend([""] * (level - 1 - len(path)))
            path.append(text.strip())
        elif text.strip():
            buffer.append(text)
    flush()
    return meta, sections


def _docx_heading_level(style: str) -> int | None:
    if style == "Title":
        return 1
    match = re.fullmatch(r"Heading (\d)", style)
    return int(match.group(1)) if match else None


def _docx_blocks(document: Any) -> Iterator[tuple[str, str]]:
    """Paragraphs and tables in body order, as (style name, text)."""
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    body = document.element.body
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            paragraph = Paragraph(child, document)
            style = paragraph.style.name if paragraph.style is not None else ""
            yield style or "", paragraph.text
        elif tag == "tbl":
            table = Table(child, document)
            for row in table.rows:
                yield "", " | ".join(cell.text.strip() for cell in row.cells)


_PAGE = re.compile(r"Page \d+")


def _first_heading(sections: list[Section]) -> str:
    heading = sections[0].path[0] if sections and sections[0].path else ""
    return "" if _PAGE.fullmatch(heading) else heading  # "Page 1" names a place, not the document


def _drop_leading_title(section: Section, title: str) -> Section:
    """The H1 repeats the title in every path; keep the path below it."""
    if len(section.path) > 1 and section.path[0] == title:
        return Section(section.path[1:], section.text)
    return section
