"""What Teams accepts, checked on every activity the bot sends (the fake connector runs these checks).

Limits from the Teams platform docs as summarised in shared/DOMAIN.md: one root Message entity, at most 20
citations, name <= 80 and abstract <= 160 characters, at most 3 keywords of <= 28 characters, every citation
position present as [n] in the text; Adaptive Cards valid against the 1.5 schema; about 100 KB per message.
"""

from __future__ import annotations

import json
from typing import Any

MESSAGE_ENTITY = "https://schema.org/Message"
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
MAX_BYTES = 80 * 1024  # Teams' recommended maximum; 100 KB is the hard limit


def problems_with(activity: dict[str, Any]) -> list[str]:
    """Every way this outgoing activity breaks what Teams accepts (empty when it is fine)."""
    problems: list[str] = []
    size = len(json.dumps(activity, ensure_ascii=False).encode())
    if size > MAX_BYTES:
        problems.append(f"activity is {size} bytes, over {MAX_BYTES}")
    entities = activity.get("entities") or []
    roots = [e for e in entities if e.get("type") == MESSAGE_ENTITY]
    if len(roots) > 1:
        problems.append(f"{len(roots)} root Message entities (Teams answers 400 to more than one)")
    text = activity.get("text") or ""
    for root in roots:
        if root.get("@type") != "Message" or root.get("@context") != "https://schema.org":
            problems.append("root entity lacks @type Message / @context https://schema.org")
        citations = root.get("citation") or []
        if len(citations) > 20:
            problems.append(f"{len(citations)} citations, more than 20")
        positions = [c.get("position") for c in citations]
        if len(set(positions)) != len(positions):
            problems.append(f"duplicate citation positions {positions}")
        for claim in citations:
            position = claim.get("position")
            appearance = claim.get("appearance") or {}
            if claim.get("@type") != "Claim" or not isinstance(position, int):
                problems.append(f"citation {claim!r} is not a Claim with an integer position")
                continue
            if f"[{position}]" not in text:
                problems.append(f"citation [{position}] does not appear in the text")
            if appearance.get("@type") != "DigitalDocument":
                problems.append(f"citation [{position}] appearance is not a DigitalDocument")
            if not appearance.get("name") or len(appearance["name"]) > 80:
                problems.append(f"citation [{position}] name missing or over 80 characters")
            if len(appearance.get("abstract") or "") > 160:
                problems.append(f"citation [{position}] abstract over 160 characters")
            keywords = appearance.get("keywords") or []
            if len(keywords) > 3 or any(len(k) > 28 for k in keywords):
                problems.append(f"citation [{position}] keywords over 3, or one over 28 characters")
            url = appearance.get("url")
            if url is not None and not str(url).startswith("https://"):
                problems.append(f"citation [{position}] url is not https")
        additional = root.get("additionalType")
        if additional is not None and additional != ["AIGeneratedContent"]:
            problems.append(f"unexpected additionalType {additional!r}")
    for attachment in activity.get("attachments") or []:
        if attachment.get("contentType") == ADAPTIVE_CARD:
            from tests.manifests.adaptive_card_schema import CardValidationError, validate_card

            try:
                validate_card(attachment.get("content") or {})
            except CardValidationError as error:
                problems.append(str(error))
    streams = [e for e in entities if e.get("type") == "streaminfo"]
    if activity.get("type") == "message" and streams and streams[0].get("streamType") != "final":
        problems.append("a message activity may only carry the final streaminfo")
    return problems
