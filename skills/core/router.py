"""Routes a message to one handler: card actions first, then command words, then the first fallback."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from skills.core.i18n import is_korean
from skills.core.ports import Turn
from skills.core.skill import CardAction, Command, Handler, Skill
from skills.core.types import Feedback, Message, Reply

_UNKNOWN_ACTION = "That button is no longer active. Please ask again."
_NOT_ALLOWED_EN = "Sorry, {what} is only available to {roles}. Ask your ward manager if you need access."
_NOT_ALLOWED_KO = (
    "죄송합니다. {what} 기능은 {roles} 권한이 있는 사용자만 사용할 수 있습니다. 필요하면 병동 관리자에게 문의하세요."
)


@dataclass(frozen=True, slots=True)
class Route:
    """The handler chosen for a message, and the skill that owns it."""

    skill: str
    handler: Handler
    roles: frozenset[str]
    what: str


class Router:
    """Ordered, first-match-wins dispatch over the installed skills."""

    def __init__(self, skills: Sequence[Skill]) -> None:
        self.skills = list(skills)
        self._help = Command(
            name="help",
            aliases=("도움말", "?", "menu"),
            description="List what Wardline can do",
            description_ko="Wardline이 할 수 있는 일을 보여줍니다",
            handler=self._on_help,
        )
        names: set[str] = {"help", *self._help.aliases}
        for skill in self.skills:
            for command in skill.commands:
                clash = names & {command.name, *command.aliases}
                if clash:
                    raise ValueError(f"command word {sorted(clash)} is defined twice (skill {skill.name})")
                names |= {command.name, *command.aliases}

    def commands(self) -> list[Command]:
        """Every command, help first: the manifest and the help text are built from this list."""
        return [self._help, *(c for s in self.skills for c in s.commands)]

    def route(self, message: Message) -> Route | None:
        """Pick the handler for a message, or None when nothing takes it."""
        if message.value is not None and isinstance(message.value.get("verb"), str):
            verb = message.value["verb"]
            for skill in self.skills:
                action: CardAction
                for action in skill.card_actions:
                    if action.verb == verb:
                        return Route(skill.name, action.handler, action.roles, verb)
            return Route("core", self._on_unknown_action, frozenset(), verb)
        word = message.command_word
        if word:
            if self._help.matches(word):
                return Route("core", self._help.handler, frozenset(), "help")
            for skill in self.skills:
                for command in skill.commands:
                    if command.matches(word):
                        return Route(skill.name, command.handler, command.roles, command.name)
        for skill in self.skills:
            if skill.fallback is not None:
                return Route(skill.name, skill.fallback, frozenset(), skill.name)
        return None

    async def dispatch(self, message: Message, turn: Turn) -> str | None:
        """Run the chosen handler (after the role check); return the owning skill's name."""
        route = self.route(message)
        if route is None:
            await self._on_help(message, turn)
            return None
        if route.roles and not (route.roles & message.user.roles):
            template = _NOT_ALLOWED_KO if is_korean(message.text) else _NOT_ALLOWED_EN
            await turn.send(Reply(text=template.format(what=route.what, roles=", ".join(sorted(route.roles)))))
            return route.skill
        await route.handler(message, turn)
        return route.skill

    async def feedback(self, skill_name: str, feedback: Feedback) -> bool:
        """Hand a vote to the skill that wrote the reply; False when it takes no feedback."""
        for skill in self.skills:
            if skill.name == skill_name and skill.on_feedback is not None:
                await skill.on_feedback(feedback)
                return True
        return False

    async def _on_unknown_action(self, message: Message, turn: Turn) -> None:
        await turn.send(Reply(text=_UNKNOWN_ACTION))

    async def _on_help(self, message: Message, turn: Turn) -> None:
        korean = is_korean(message.text) or (message.locale or "").lower().startswith("ko")
        lines = ["**Wardline** 도움말" if korean else "**Wardline** can help with:"]
        for command in self.commands():
            description = (command.description_ko or command.description) if korean else command.description
            usage = f" {command.usage}" if command.usage else ""
            lines.append(f"- `{command.name}{usage}`: {description}")
        for skill in self.skills:
            if skill.fallback is not None:
                lines.append(
                    "\n질문을 그대로 입력하면 병원 프로토콜에서 근거를 찾아 답합니다."
                    if korean
                    else "\nOr just type a question: Wardline answers from the hospital's protocols, with sources."
                )
                break
        await turn.send(Reply(text="\n".join(lines)))
