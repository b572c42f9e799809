"""Sub-commands of `wardline` beyond the core ones, one module per feature.

Each module exposes `register(commands)`, adding its parsers to the `wardline` sub-parser set; every parser sets
`func=callable(args, settings) -> int`. List the module in `MODULES`; `bot.cli` registers them in this order.
"""

from __future__ import annotations

MODULES: tuple[str, ...] = (
    "bot.commands.handover",
    "bot.commands.directory",
    "bot.commands.privacy",  # issue 6: privacy purge
    "bot.commands.alerts",
    "bot.commands.protocols",  # protocols list, protocols show
    "bot.commands.channels",
)
