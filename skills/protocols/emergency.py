"""Questions that describe an emergency happening now: staff get the hospital's emergency instruction first."""

from __future__ import annotations

import re
import unicodedata

# Phrases staff type when a patient is deteriorating now. A false alarm costs one extra line; a miss costs time.
_ENGLISH = re.compile(
    r"(?i)\b(?:not|isn'?t|is not|stopped|stop|no longer|unable to|can'?t|cannot|isnt)\s+breath(?:e|ing)\b"
    r"|\bno (?:pulse|breathing|heartbeat|respirations?|signs of life)\b|\bpulseless\b|\bapn(?:o|oe)ic\b"
    r"|\bcode blue\b|\b(?:cardiac|respiratory|cardio-?pulmonary) arrest\b|\barrest(?:ed|ing)\b"
    r"|\b(?:is |was |has )?(?:unresponsive|collapsed|choking|turning blue|blue lips)\b|\bstart(?:ed|ing)? cpr\b"
    r"|\bdoing cpr\b|\bseizing\b|\bstatus epilepticus\b|\banaphyla(?:xis|ctic)\b"
    r"|\b(?:massive|uncontrolled|major) (?:bleed(?:ing)?|haemorrhage|hemorrhage)\b|\bairway (?:obstruct|block)"
)
# Korean is matched with spaces removed: "숨을 안 쉬어요" and "숨을안쉬어요" are the same message.
_KOREAN = re.compile(
    r"심정지|심장(?:이)?(?:멈|정지)|호흡정지|호흡(?:이)?(?:없|멈|안)|숨(?:을|이)?(?:안|못)쉬|숨(?:을|이)?(?:쉬지|멈)|"
    r"숨(?:을)?안쉼|무호흡|맥박(?:이)?(?:없|안잡|촉지(?:가)?안)|의식(?:이)?없|반응(?:이)?없|코드블루|"
    r"심폐소생|CPR|쓰러졌|쓰러짐|경련(?:중|하고있|을하고)|아나필락시스|기도(?:가)?막|질식|대량출혈|출혈(?:이)?멈추지"
)


def is_emergency(text: str) -> bool:
    """Whether a message describes an emergency (arrest, not breathing, code blue, ...), in English or Korean."""
    normal = unicodedata.normalize("NFKC", text)
    return bool(_ENGLISH.search(normal) or _KOREAN.search(re.sub(r"\s+", "", normal).upper()))
