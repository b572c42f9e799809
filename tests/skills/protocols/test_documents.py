"""Every document format end to end through load_document and chunk_document, plus the bundled samples."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import docx
import pytest
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from skills.protocols import SAMPLES
from skills.protocols.chunking import Chunk, chunk_document, split_text
from skills.protocols.documents import (
    META_KEYS,
    NOT_A_PROTOCOL,
    Document,
    DocumentError,
    content_hash,
    iter_protocol_files,
    load_document,
)

SEPSIS_MD = """\
---
id: sepsis-test
title: "Sepsis: Test Protocol"
version: 1.3
effective: 2026-01-01
owner: Critical Care Committee
department: Nursing
language: en
sources: SSC 2021; Sepsis-3 (JAMA 2016)
---

# Sepsis: Test Protocol

Applies to all adult wards.

## Recognition

Screen every patient with NEWS2 of 5 or more for infection.

## Treatment

### Fluids

Give **30 mL/kg** crystalloid within 3 hours. See [the SSC guideline](https://example.org/ssc).

### Vasopressors

Noradrenaline is the first-line vasopressor.

#### Targets

Aim for a mean arterial pressure of 65 mmHg or more.
"""


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def load(path: Path, source: str | None = None) -> Document:
    document = load_document(path, source or path.name)
    assert document is not None
    return document


def paths(document: Document) -> list[tuple[str, ...]]:
    return [section.path for section in document.sections]


def text_of(document: Document, path: tuple[str, ...]) -> str:
    [section] = [s for s in document.sections if s.path == path]
    return section.text


# -- Markdown ------------------------------------------------------------------------------------------------------


def test_markdown_with_front_matter_and_nested_headings(tmp_path: Path) -> None:
    path = write(tmp_path, "icu/sepsis.md", SEPSIS_MD)
    document = load(path, "icu/sepsis.md")

    assert document.meta == {
        "id": "sepsis-test",
        "title": "Sepsis: Test Protocol",
        "version": "1.3",
        "effective": "2026-01-01",
        "owner": "Critical Care Committee",
        "department": "Nursing",
        "language": "en",
        "sources": "SSC 2021; Sepsis-3 (JAMA 2016)",
    }
    assert set(META_KEYS) <= set(document.meta)
    assert document.title == "Sepsis: Test Protocol"
    assert document.language == "en"
    assert document.source == "icu/sepsis.md"
    assert document.content_hash == content_hash(path.read_bytes())
    assert paths(document) == [
        ("Sepsis: Test Protocol",),
        ("Recognition",),
        ("Treatment", "Fluids"),
        ("Treatment", "Vasopressors"),
        ("Treatment", "Vasopressors", "Targets"),
    ]
    fluids = text_of(document, ("Treatment", "Fluids"))
    assert fluids == "Give 30 mL/kg crystalloid within 3 hours. See the SSC guideline."  # bold and link markup gone
    assert all("---" not in s.text and "owner:" not in s.text for s in document.sections)

    chunks = chunk_document(document)
    assert [c.section for c in chunks] == [
        "Sepsis: Test Protocol",
        "Recognition",
        "Treatment › Fluids",
        "Treatment › Vasopressors",
        "Treatment › Vasopressors › Targets",
    ]
    assert [c.key for c in chunks] == [f"icu/sepsis.md#{i:04d}" for i in range(5)]
    assert [c.ordinal for c in chunks] == list(range(5))
    assert {(c.source, c.title, c.version, c.language) for c in chunks} == {
        ("icu/sepsis.md", "Sepsis: Test Protocol", "1.3", "en")
    }
    assert chunks[0].label == "Sepsis: Test Protocol"
    assert chunks[2].label == "Sepsis: Test Protocol › Treatment › Fluids"
    assert Chunk.from_record(chunks[2].key, chunks[2].to_record()) == chunks[2]


def test_front_matter_effective_date_is_an_alias(tmp_path: Path) -> None:
    path = write(tmp_path, "a.md", "---\nTitle: Alias\nEffective Date: 2026-02-01\n---\n\n# Alias\n\nBody text.\n")
    document = load(path)
    assert document.meta == {"title": "Alias", "effective": "2026-02-01"}


def test_markdown_without_front_matter_takes_the_title_from_the_h1(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hand-hygiene.md",
        "# Hand Hygiene\n\nClean hands save lives.\n\n## Five moments\n\nBefore touching a patient.\n",
    )
    document = load(path)
    assert document.title == "Hand Hygiene"
    assert document.meta == {}
    assert document.language == ""
    assert paths(document) == [("Hand Hygiene",), ("Five moments",)]
    assert [c.section for c in chunk_document(document)] == ["Hand Hygiene", "Five moments"]


def test_markdown_without_any_heading_takes_the_title_from_the_file_name(tmp_path: Path) -> None:
    document = load(write(tmp_path, "falls-prevention_v2.md", "Keep the bed low.\n"))
    assert document.title == "falls prevention v2"
    [chunk] = chunk_document(document)
    assert chunk.section == "falls prevention v2"
    assert chunk.text == "Keep the bed low."


@pytest.mark.parametrize("fence", ["```", "~~~"])
def test_a_hash_line_inside_a_code_fence_is_not_a_heading(tmp_path: Path, fence: str) -> None:
    body = (
        "# Line Care\n\n## Flushing\n\nUse the script:\n\n"
        f"{fence}bash\n# not a heading\n## neither is this\necho flush\n{fence}\n\n"
        "After the fence.\n\n## Removal\n\nRemove when no longer needed.\n"
    )
    document = load(write(tmp_path, "lines.md", body))
    assert paths(document) == [("Flushing",), ("Removal",)]
    flushing = text_of(document, ("Flushing",))
    assert "# not a heading" in flushing
    assert "## neither is this" in flushing
    assert "After the fence." in flushing
    assert all("not a heading" not in c.section for c in chunk_document(document))


# -- plain text ----------------------------------------------------------------------------------------------------

PLAIN = """\
PRESSURE INJURY PREVENTION

1. Purpose
Prevent hospital-acquired pressure injuries.

2. Assessment
2.1 Braden scale
Score every patient within 8 hours of admission.
2.2 Skin inspection
Inspect bony prominences every shift.

3. Prevention
Reposition immobile patients every 2 hours.
"""


def test_plain_text_numbered_headings_become_a_heading_path(tmp_path: Path) -> None:
    document = load(write(tmp_path, "pressure.txt", "---\ntitle: Pressure Injury Prevention\n---\n" + PLAIN))
    assert document.title == "Pressure Injury Prevention"
    assert paths(document) == [
        ("1. Purpose",),
        ("2. Assessment", "2.1 Braden scale"),
        ("2. Assessment", "2.2 Skin inspection"),
        ("3. Prevention",),
    ]
    assert text_of(document, ("2. Assessment", "2.1 Braden scale")) == (
        "Score every patient within 8 hours of admission."
    )
    sections = [c.section for c in chunk_document(document)]
    assert sections[1] == "2. Assessment › 2.1 Braden scale"


def test_plain_text_without_front_matter_takes_its_title_line(tmp_path: Path) -> None:
    document = load(write(tmp_path, "pressure.txt", PLAIN))
    assert document.title.lower() == "pressure injury prevention"


def test_a_body_line_starting_with_a_dose_is_not_a_heading(tmp_path: Path) -> None:
    text = "1. Fluids\nGive a bolus of\n500 mL of 0.9% sodium chloride over 30 minutes\nthen reassess.\n"
    document = load(write(tmp_path, "fluids.txt", text))
    assert paths(document) == [("1. Fluids",)]
    assert "500 mL of 0.9% sodium chloride" in document.sections[0].text


def test_cp949_korean_text_file(tmp_path: Path) -> None:
    text = "---\ntitle: 낙상 예방 지침\nlanguage: ko\n---\n1. 목적\n낙상을 예방한다.\n\n2. 평가\n2.1 낙상 위험 평가\n입원 시 모든 환자를 평가한다.\n"
    path = write(tmp_path, "낙상.txt", text.encode("cp949"))
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")  # really not UTF-8

    document = load(path)
    assert document.title == "낙상 예방 지침"
    assert document.language == "ko"
    assert paths(document) == [("1. 목적",), ("2. 평가", "2.1 낙상 위험 평가")]
    assert text_of(document, ("2. 평가", "2.1 낙상 위험 평가")) == "입원 시 모든 환자를 평가한다."
    assert [c.section for c in chunk_document(document)] == ["1. 목적", "2. 평가 › 2.1 낙상 위험 평가"]


def test_utf8_with_bom_and_front_matter(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.md", "\ufeff---\ntitle: BOM\n---\n# BOM\n\nText.\n".encode())
    assert load(path).meta == {"title": "BOM"}


# -- HTML ----------------------------------------------------------------------------------------------------------

HTML = """\
<!DOCTYPE html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<title>Isolation Precautions (HTML)</title>
<meta name="wardline:version" content="4.2">
<meta name="wardline:owner" content="Infection Prevention &amp; Control">
<meta name="description" content="not wardline metadata">
<style>h2 { color: red; } .x::before { content: "STYLE TEXT"; }</style>
<script>var injected = "<h2>SCRIPT HEADING</h2>";</script>
</head>
<body>
<h1>Isolation Precautions (HTML)</h1>
<p>Applies to every inpatient area &amp; clinic.</p>
<h2>Contact precautions</h2>
<p>Wear a gown and gloves on entry.</p>
<h3>Room</h3>
<p>A single room is preferred.</p>
<table>
  <tr><th>Organism</th><th>Precaution</th></tr>
  <tr><td>MRSA</td><td>Contact</td></tr>
  <tr><td>Measles</td><td>Airborne</td></tr>
</table>
<script>document.write("SCRIPT BODY TEXT")</script>
<h2>Airborne precautions</h2>
<ul><li>N95 respirator</li><li>Negative pressure room</li></ul>
</body>
</html>
"""


def test_html_headings_meta_and_ignored_script_and_style(tmp_path: Path) -> None:
    document = load(write(tmp_path, "isolation.html", HTML))

    assert document.title == "Isolation Precautions (HTML)"
    assert document.meta["version"] == "4.2"
    assert document.meta["owner"] == "Infection Prevention & Control"
    assert document.meta["language"] == "en"
    assert "description" not in document.meta
    assert paths(document) == [
        ("Isolation Precautions (HTML)",),
        ("Contact precautions",),
        ("Contact precautions", "Room"),
        ("Airborne precautions",),
    ]
    everything = "\n".join(s.text for s in document.sections) + " ".join(" ".join(p) for p in paths(document))
    for hidden in ("STYLE TEXT", "SCRIPT HEADING", "SCRIPT BODY TEXT", "color: red", "injected"):
        assert hidden not in everything
    assert text_of(document, ("Isolation Precautions (HTML)",)) == "Applies to every inpatient area & clinic."
    room = text_of(document, ("Contact precautions", "Room"))
    for cell in ("A single room is preferred.", "Organism", "Precaution", "MRSA", "Contact", "Measles", "Airborne"):
        assert cell in room
    assert text_of(document, ("Airborne precautions",)) == "- N95 respirator\n- Negative pressure room"

    chunks = chunk_document(document)
    assert {c.version for c in chunks} == {"4.2"}
    assert [c.section for c in chunks][2] == "Contact precautions › Room"


def test_html_table_rows_stay_on_one_line(tmp_path: Path) -> None:
    document = load(write(tmp_path, "isolation.html", HTML))
    rows = [line.strip(" |") for line in text_of(document, ("Contact precautions", "Room")).splitlines()]
    assert "Organism | Precaution" in rows
    assert "MRSA | Contact" in rows
    assert "Measles | Airborne" in rows


def test_html_with_front_matter_before_the_doctype(tmp_path: Path) -> None:
    document = load(write(tmp_path, "iso.htm", "---\nversion: 9\nlanguage: ko\n---\n" + HTML))
    assert document.meta["version"] == "9"  # front matter wins over <meta name="wardline:version">
    assert document.meta["language"] == "ko"


# -- PDF -----------------------------------------------------------------------------------------------------------


def make_pdf(path: Path, lines_per_page: list[list[str]], *, title: str | None, author: str | None = None) -> Path:
    pdf = canvas.Canvas(str(path), pagesize=A4)
    if title is not None:
        pdf.setTitle(title)
    if author is not None:
        pdf.setAuthor(author)
    pdf.setSubject("Critical Care")
    for lines in lines_per_page:
        y = 800.0
        for line in lines:
            pdf.drawString(72, y, line)
            y -= 18
        pdf.showPage()
    pdf.save()
    return path


PDF_PAGES = [
    [
        "1. Purpose",
        "This protocol covers the recognition of sepsis on adult wards.",
        "2. Treatment",
        "2.1 Fluids",
        "Give a crystalloid bolus within the first hour.",
        "2.2 Antibiotics",
        "Start broad-spectrum antibiotics after blood cultures.",
    ],
    ["3. Escalation", "Call the rapid response team when NEWS2 is 7 or more."],
]


def test_pdf_title_from_metadata_and_numbered_headings(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "sepsis.pdf", PDF_PAGES, title="Sepsis PDF Protocol", author="Sepsis Committee")
    document = load(path)

    assert document.title == "Sepsis PDF Protocol"
    assert document.meta["owner"] == "Sepsis Committee"
    assert document.meta["department"] == "Critical Care"
    assert paths(document) == [
        ("1. Purpose",),
        ("2. Treatment", "2.1 Fluids"),
        ("2. Treatment", "2.2 Antibiotics"),
        ("3. Escalation",),  # on page 2
    ]
    assert text_of(document, ("2. Treatment", "2.1 Fluids")) == "Give a crystalloid bolus within the first hour."
    chunks = chunk_document(document)
    assert [c.section for c in chunks][-1] == "3. Escalation"
    assert {c.title for c in chunks} == {"Sepsis PDF Protocol"}


def test_pdf_without_headings_or_title(tmp_path: Path) -> None:
    pages = [["Wash hands before touching a patient."], ["Wash hands after body fluid exposure."]]
    document = load(make_pdf(tmp_path / "hands.pdf", pages, title=""))
    assert document.title == "hands"  # no title in the metadata: the file name
    first, second = chunk_document(document)  # no headings: each page is a citable section
    assert first.section == "Page 1"
    assert "before touching a patient" in first.text
    assert second.section == "Page 2"
    assert "after body fluid exposure" in second.text


def test_pdf_front_matter_in_the_text_is_read(tmp_path: Path) -> None:
    pages = [["---", "version: 7.1", "language: en", "---", "1. Scope", "All wards are covered."]]
    document = load(make_pdf(tmp_path / "scope.pdf", pages, title="Scope PDF"))
    assert document.meta["version"] == "7.1"
    assert document.meta["title"] == "Scope PDF"
    assert paths(document) == [("1. Scope",)]


# -- DOCX ----------------------------------------------------------------------------------------------------------


def make_docx(path: Path) -> Path:
    document = docx.Document()
    props = document.core_properties
    props.title = "Falls Prevention (DOCX)"
    props.version = "3.2"
    props.author = "Patient Safety Committee"
    props.category = "Nursing"
    props.language = "en"
    document.add_heading("Falls Prevention (DOCX)", level=0)  # the "Title" style
    document.add_paragraph("Every adult inpatient is screened.")
    document.add_heading("Assessment", level=1)
    document.add_paragraph("Assess every patient on admission.")
    document.add_heading("Tools", level=2)
    document.add_paragraph("Use the Morse Fall Scale.")
    table = document.add_table(rows=3, cols=2)
    for row, (score, risk) in enumerate([("Score", "Risk"), ("0-24", "Low"), ("45+", "High")]):
        table.cell(row, 0).text = score
        table.cell(row, 1).text = risk
    document.add_paragraph("Re-assess after any fall.")
    document.add_heading("Interventions", level=1)
    document.add_paragraph("Keep the bed in the lowest position.")
    document.add_paragraph("")
    document.save(str(path))
    return path


def test_docx_styles_table_and_core_properties(tmp_path: Path) -> None:
    document = load(make_docx(tmp_path / "falls.docx"))

    assert document.title == "Falls Prevention (DOCX)"
    assert document.meta == {
        "title": "Falls Prevention (DOCX)",
        "version": "3.2",
        "owner": "Patient Safety Committee",
        "department": "Nursing",
        "language": "en",
    }
    assert paths(document) == [
        ("Falls Prevention (DOCX)",),
        ("Assessment",),
        ("Assessment", "Tools"),
        ("Interventions",),
    ]
    assert text_of(document, ("Assessment", "Tools")) == (
        "Use the Morse Fall Scale.\nScore | Risk\n0-24 | Low\n45+ | High\nRe-assess after any fall."
    )
    chunks = chunk_document(document)
    assert [c.section for c in chunks] == [
        "Falls Prevention (DOCX)",
        "Assessment",
        "Assessment › Tools",
        "Interventions",
    ]
    assert {c.version for c in chunks} == {"3.2"}


# -- not a protocol, unreadable, empty -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["README.md", "notes.txt", "index.html"])
def test_not_a_protocol_marker_gives_none(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, f"  \n{NOT_A_PROTOCOL}\n\n# About this folder\n\nNothing clinical here.\n")
    assert load_document(path, name) is None


def _truncated_pdf(tmp_path: Path) -> bytes:
    data = make_pdf(tmp_path / "whole.pdf", PDF_PAGES, title="Whole").read_bytes()
    return data[: len(data) // 2]


def _zip_without_docx_parts() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "not a word document")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("random.pdf", os.urandom(4096)),
        ("header-only.pdf", b"%PDF-1.7\n" + b"\x00garbage\n" * 100),
        ("truncated.pdf", "truncated-pdf"),
        ("random.docx", os.urandom(4096)),
        ("text.docx", b"this is plain text, not a docx"),
        ("other-zip.docx", _zip_without_docx_parts()),
        ("binary.md", bytes(range(256)) * 8),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_corrupt_files_raise_document_error_naming_the_file(tmp_path: Path, name: str, content: object) -> None:
    data = _truncated_pdf(tmp_path) if content == "truncated-pdf" else content
    assert isinstance(data, bytes)
    path = write(tmp_path, f"ward 7/{name}", data)
    with pytest.raises(DocumentError) as caught:
        load_document(path, f"ward 7/{name}")
    assert type(caught.value) is DocumentError
    assert f"ward 7/{name}" in str(caught.value)


@pytest.mark.parametrize("name", ["empty.md", "empty.txt", "empty.html", "empty.pdf", "empty.docx", "blank.md"])
def test_empty_files_raise_document_error(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, b"  \n\n  \n" if name == "blank.md" else b"")
    with pytest.raises(DocumentError, match=name.replace(".", r"\.")):
        load_document(path, name)


def test_front_matter_only_is_an_empty_document(tmp_path: Path) -> None:
    path = write(tmp_path, "meta-only.md", "---\ntitle: Nothing\n---\n")
    with pytest.raises(DocumentError, match="no text"):
        load_document(path, "meta-only.md")


def test_missing_file_raises_document_error(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"gone\.md"):
        load_document(tmp_path / "gone.md", "gone.md")


def test_iter_protocol_files_skips_hidden_and_unsupported(tmp_path: Path) -> None:
    for name in ["b.md", "a/c.TXT", "d.pdf", "e.docx", "f.html", "g.htm", "h.markdown"]:
        write(tmp_path, name, "x")
    for name in [".hidden.md", ".git/x.md", "_drafts/y.md", "~$lock.docx", "notes.xlsx", "image.png"]:
        write(tmp_path, name, "x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_protocol_files(tmp_path)]
    assert found == ["a/c.TXT", "b.md", "d.pdf", "e.docx", "f.html", "g.htm", "h.markdown"]


# -- chunking ------------------------------------------------------------------------------------------------------


def test_long_sections_split_on_paragraph_boundaries_keeping_the_section(tmp_path: Path) -> None:
    paragraphs = [f"Paragraph {i}: " + " ".join(f"word{i}x{j}" for j in range(40)) + "." for i in range(12)]
    assert all(250 < len(p) < 500 for p in paragraphs)
    body = "# Long Protocol\n\n## Part A\n\n" + "\n\n".join(paragraphs) + "\n\n## Part B\n\nShort.\n"
    document = load(write(tmp_path, "long.md", body))

    chunks = chunk_document(document, max_chars=1000)
    part_a = [c for c in chunks if c.section == "Part A"]
    assert len(part_a) >= 4
    assert all(len(c.text) <= 1000 for c in part_a)
    pieces = [piece for c in part_a for piece in c.text.split("\n\n")]
    assert pieces == paragraphs  # whole paragraphs, in order, nothing lost or duplicated
    assert [c.section for c in chunks][-1] == "Part B"
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert len({c.key for c in chunks}) == len(chunks)


def test_an_overlong_paragraph_is_split_on_sentences() -> None:
    sentences = [f"Sentence number {i} says something about the protocol." for i in range(40)]
    pieces = split_text(" ".join(sentences), 300)
    assert len(pieces) > 1
    assert all(len(p) <= 300 for p in pieces)
    assert [s for p in pieces for s in p.split("\n\n")] == sentences


def test_an_unbroken_run_is_cut_hard() -> None:
    pieces = split_text("x" * 5000, 1000)
    assert "".join(pieces) == "x" * 5000
    assert all(len(p) <= 2000 for p in pieces)


def test_short_text_is_one_piece() -> None:
    assert split_text("Short text.\n\nTwo paragraphs.", 1500) == ["Short text.\n\nTwo paragraphs."]


# -- the bundled samples -------------------------------------------------------------------------------------------

SAMPLE_FILES = sorted(p.name for p in iter_protocol_files(SAMPLES))


def test_samples_folder_has_markdown_html_and_text() -> None:
    suffixes = {Path(name).suffix for name in SAMPLE_FILES}
    assert {".md", ".html", ".txt"} <= suffixes
    assert len(SAMPLE_FILES) >= 10
    assert load_document(SAMPLES / "README.md", "README.md") is None


@pytest.mark.parametrize("name", [n for n in SAMPLE_FILES if n != "README.md"])
def test_every_sample_loads_with_full_metadata_and_the_sample_notice(name: str) -> None:
    document = load(SAMPLES / name)

    assert set(META_KEYS) <= set(document.meta), sorted(set(META_KEYS) - set(document.meta))
    assert all(document.meta[key].strip() for key in META_KEYS)
    assert document.meta["id"] == Path(name).stem
    assert document.title == document.meta["title"]
    assert document.language in ("en", "ko")
    assert (document.language == "ko") == Path(name).stem.endswith("-ko")
    first = document.sections[0].text
    if document.language == "en":
        assert "SAMPLE" in first
        assert "not for clinical use" in first
    else:
        assert "샘플" in first
        assert "임상에 사용할 수 없습니다" in first
    chunks = chunk_document(document)
    assert len(chunks) >= 5
    assert all(c.text.strip() and c.section for c in chunks)
    assert all(c.version == document.meta["version"] for c in chunks)
