"""The Bot Framework boundary: the only package that imports botbuilder (a later Agents SDK port replaces it)."""

from bot.teams.adapter import TeamsEndpoint

__all__ = ["TeamsEndpoint"]
