"""Minimise patient identifiers in text before it leaves the hospital (e.g. to a language model)."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Korean resident registration number: 6 digits (birth date), a dash, 7 digits (first is 1-8).
_RRN = re.compile(r"\b\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\s?-?\s?[1-8]\d{6}\b")
_PHONE = re.compile(
    r"(?<!\d)(?:\+?82[-\s]?)?0?1[016789][-\s.]?\d{3,4}[-\s.]?\d{4}(?!\d)|(?<!\d)0\d{1,2}-\d{3,4}-\d{4}(?!\d)"
)
_MRN_LABELLED = re.compile(
    r"(?i)\b(?:MRN|medical record(?: number| no\.?)?|record no\.?|hospital no\.?|patient id|pt id|등록번호|환자번호)"
    r"\s*[:#]?\s*[A-Z0-9-]{4,}"
)
_LONG_NUMBER = re.compile(r"(?<![\d.])\d{7,}(?![\d.])")  # bare 7+ digit numbers: record numbers, not doses
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


PLACEHOLDER = re.compile(r"\[(?:RRN|MRN|EMAIL|PHONE|ID|NAME)\]")


def without_identifiers(text: str, names: Iterable[str] = ()) -> str:
    """The text with identifiers removed outright (for search queries, where a placeholder is noise)."""
    return " ".join(PLACEHOLDER.sub(" ", mask_identifiers(text, names)).split())


def mask_identifiers(text: str, names: Iterable[str] = ()) -> str:
    """Replace resident numbers, phone numbers, record numbers, e-mails and the given names with placeholders."""
    text = _RRN.sub("[RRN]", text)
    text = _MRN_LABELLED.sub("[MRN]", text)
    text = _EMAIL.sub("[EMAIL]", text)
    text = _PHONE.sub("[PHONE]", text)
    text = _LONG_NUMBER.sub("[ID]", text)
    for name in sorted({n.strip() for n in names if len(n.strip()) >= 2}, key=len, reverse=True):
        text = re.sub(re.escape(name), "[NAME]", text)
    return text
