"""Language detection small enough to need no model: Korean vs English is all Wardline needs."""

from __future__ import annotations

import re

_HANGUL = re.compile(r"[\uac00-\ud7a3\u3131-\u318e]")
_LATIN = re.compile(r"[A-Za-z]")


def is_korean(text: str) -> bool:
    """True when Hangul makes up a quarter of the letters or more: Korean notes mix in English abbreviations."""
    hangul = len(_HANGUL.findall(text))
    latin = len(_LATIN.findall(text))
    return hangul > 0 and hangul * 4 >= hangul + latin


def language_of(text: str) -> str:
    """'ko' or 'en'."""
    return "ko" if is_korean(text) else "en"
