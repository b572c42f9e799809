"""The broadcast tests share the handover suite's in-memory hospital and its privacy and card checks."""

from tests.skills.handover.conftest import world

__all__ = ["world"]
