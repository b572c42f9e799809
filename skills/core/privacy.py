"""Minimise patient identifiers in text before it leaves the hospital (e.g. to a language model) or is stored.

Patterns are matched on a normalised copy of the text (NFKC, so full-width digits are digits; every dash-like
character as "-"), and the matching spans are replaced in the original text. Each pattern is covered by
hypothesis-generated variants in `tests/skills/core/test_privacy_properties.py`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

# Every character that people (or word processors) type between the groups of a number.
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043\ufe58\ufe63\uff0d\u30fc\u00ad"
_DASH_TO_HYPHEN = {ord(c): "-" for c in _DASHES}
_ANY_DASH = re.compile(f"[{_DASHES}]")
_LATIN_WORD = re.compile(r"[a-z0-9\u00c0-\u024f]+")  # what a Latin name part is looked up as
_SEP = r"[ \t.-]?"  # one optional separator between the groups of a phone number

# Korean resident registration number: 6 digits (birth date), a dash, 7 digits (the first is 1-8). The digits may
# run on from a label ("주민번호900101-..."), so the boundary is "not a digit", not a word boundary. A number already
# partly starred out (900101-1******) is still masked whole.
_RRN = re.compile(r"(?<!\d)\d{6}\s*-?\s*[1-8](?:\d{6}|[*xX]{6})(?!\d)")
_PHONE = re.compile(
    r"(?<![\d+])(?:\+\s?82" + _SEP + r"\(?0?\)?|0)1[016789]" + _SEP + r"\d{3,4}" + _SEP + r"\d{4}(?!\d)"  # mobile
    r"|(?<![\d+])(?:\+\s?82"
    + _SEP
    + r"\(?0?\)?|0)(?:2|[3-6][1-5]|70)"
    + r"[ \t.)-]{1,2}\d{3,4}"
    + _SEP
    + r"\d{4}(?!\d)"
    r"|(?<!\d)\+\s?\d{1,3}(?:" + _SEP + r"\d{2,5}){2,4}(?!\d)"  # any other international number
)
_MRN_LABELLED = re.compile(
    r"(?i)(?:\bMRN|\bmedical record(?: number| no\.?)?|\brecord no\.?|\bhospital no\.?|\bpatient id|\bpt id"
    r"|등록번호|환자번호|병록번호|차트번호)"
    r"\s*[:#]?\s*[A-Z0-9-]{4,}"
)
_DOB_LABELLED = re.compile(
    r"(?i)(?:\bDOB|\bdate of birth|\bborn(?: on)?|생년월일)\s*[:#]?\s*\d{2,4}[./\s-]?\d{1,2}[./\s-]?\d{1,2}"
)
_LONG_NUMBER = re.compile(r"(?<![\d.])\d{7,}(?![\d.])")  # bare 7+ digit numbers: record numbers, not doses
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")

# In priority order: where two patterns overlap, the earlier one names the span.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (_RRN, "RRN"),
    (_MRN_LABELLED, "MRN"),
    (_DOB_LABELLED, "DOB"),
    (_EMAIL, "EMAIL"),
    (_PHONE, "PHONE"),
    (_LONG_NUMBER, "ID"),
)

PLACEHOLDER = re.compile(r"\[(?:RRN|MRN|DOB|EMAIL|PHONE|ID|NAME)\]")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
# A Latin name ends where Latin letters end: Korean particles may follow it directly (Minji님).
_NOT_LATIN_BEFORE = r"(?<![A-Za-z0-9\u00c0-\u024f])"
_NOT_LATIN_AFTER = r"(?![A-Za-z0-9\u00c0-\u024f])"


def without_identifiers(text: str, names: Iterable[str] = ()) -> str:
    """The text with identifiers removed outright (for search queries, where a placeholder is noise)."""
    return " ".join(PLACEHOLDER.sub(" ", mask_identifiers(text, names)).split())


def mask_identifiers(text: str, names: Iterable[str] = ()) -> str:
    """Replace resident numbers, phone numbers, record numbers, birth dates, e-mails and known names with placeholders.

    `names` are people's names known to the hospital (the staff directory, a handover roster): matched without
    regard to case, width or spacing between the parts of the name.
    """
    if not text:
        return text
    normal, origin = _normalised(text)
    labels: list[str | None] = [None] * len(normal)
    lowered = normal.lower()
    words = set(_LATIN_WORD.findall(lowered))
    pairs = {lowered[i : i + 2] for i in range(len(lowered) - 1)} if _HANGUL.search(lowered) else set()
    candidates = [
        pattern
        for name in set(names)
        for needle, pattern in _name_variants(name)
        if needle in words or needle in pairs or (len(needle) != 2 and not needle.isascii() and needle in lowered)
    ]
    for pattern, label in (*_PATTERNS, *((p, "NAME") for p in candidates)):
        for match in pattern.finditer(normal):
            for i in range(match.start(), match.end()):
                if labels[i] is None:
                    labels[i] = label
    if not any(labels):
        return text
    # Back to the original text: a run of one label becomes one placeholder; original characters stay otherwise.
    marks: list[str | None] = [None] * len(text)
    for i, found in enumerate(labels):
        if found is not None:
            marks[origin[i]] = found
    out: list[str] = []
    previous: str | None = None
    for char, mark in zip(text, marks, strict=True):
        if mark is None:
            out.append(char)
        elif mark != previous:
            out.append(f"[{mark}]")
        previous = mark
    return "".join(out)


def _normalised(text: str) -> tuple[str, list[int]]:
    """NFKC per character with dashes unified, and for each character of the copy the index it came from."""
    if text.isascii() or (unicodedata.is_normalized("NFKC", text) and not _ANY_DASH.search(text)):
        return text, list(range(len(text)))  # the common case: nothing to change
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        normal = unicodedata.normalize("NFKC", char).translate(_DASH_TO_HYPHEN) if not char.isascii() else char
        chars.append(normal)
        origin.extend([index] * len(normal))
    return "".join(chars), origin


@lru_cache(maxsize=16384)
def _name_variants(name: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """(needle, pattern) pairs for one known name: the pattern runs only when the lower-cased needle is in the text
    (a plain substring test), so a directory of thousands of names costs little per message."""
    parts = tuple(unicodedata.normalize("NFKC", name).split())
    if not parts or len("".join(parts)) < 2:
        return ()
    if _HANGUL.search("".join(parts)):
        # 홍길동 is also written 홍 길동; particles attach directly (홍길동님), so no word boundary
        if len(parts) == 1 and len(parts[0]) >= 3:
            given = parts[0][1:]
            body = re.escape(parts[0][0]) + r"\s*" + re.escape(given)
            return ((given.lower(), re.compile(body, re.IGNORECASE)),)
        return ((parts[-1].lower(), re.compile(r"\s*".join(map(re.escape, parts)), re.IGNORECASE)),)
    variants = [(_needle(parts[0]), r"\s+".join(map(re.escape, parts)))]
    if len(parts) > 1:
        # "Kim Minji" is also "Minji Kim" and plain "Minji"
        variants.append((_needle(parts[-1]), r"\s+".join(map(re.escape, parts[::-1]))))
        variants.extend((_needle(p), re.escape(p)) for p in parts if len(p) >= 3)
    return tuple(
        (needle, re.compile(f"{_NOT_LATIN_BEFORE}{body}{_NOT_LATIN_AFTER}", re.IGNORECASE)) for needle, body in variants
    )


def _needle(part: str) -> str:
    """The word of a Latin name part that must occur as a whole word for the part to be in a text."""
    words = _LATIN_WORD.findall(part.lower())
    return max(words, key=len) if words else part.lower()
