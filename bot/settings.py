"""Typed settings: the only code that reads the environment (and an optional .env file)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values


class SettingsError(ValueError):
    """A setting has a value Wardline cannot use; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Option:
    """One environment variable: its name, default and meaning. The README table is generated from these."""

    env: str
    field: str
    default: str
    help: str
    secret: bool = False


OPTIONS: tuple[Option, ...] = (
    Option("MicrosoftAppId", "app_id", "", "Bot (Entra app registration) id. Empty: anonymous local mode, no auth."),
    Option("MicrosoftAppPassword", "app_password", "", "Client secret of the bot's app registration.", secret=True),
    Option("MicrosoftAppType", "app_type", "MultiTenant", "MultiTenant, SingleTenant or UserAssignedMSI."),
    Option("MicrosoftAppTenantId", "app_tenant_id", "", "Tenant id, required for SingleTenant and UserAssignedMSI."),
    Option(
        "AZURE_OPENAI_ENDPOINT", "openai_endpoint", "", "Azure OpenAI endpoint, e.g. https://NAME.openai.azure.com."
    ),
    Option("AZURE_OPENAI_API_KEY", "openai_api_key", "", "API key. Empty: Entra ID (see AZURE_CLIENT_*).", secret=True),
    Option("AZURE_OPENAI_API_VERSION", "openai_api_version", "2024-10-21", "Azure OpenAI REST API version."),
    Option(
        "AZURE_OPENAI_CHAT_DEPLOYMENT",
        "openai_chat_deployment",
        "",
        "Chat deployment. Empty: extractive answers.",
    ),
    Option(
        "AZURE_OPENAI_EMBEDDING_DEPLOYMENT",
        "openai_embedding_deployment",
        "",
        "Embedding deployment (e.g. text-embedding-3-small). Empty: local or lexical retrieval.",
    ),
    Option("AZURE_TENANT_ID", "azure_tenant_id", "", "Entra tenant for Azure OpenAI without an API key."),
    Option("AZURE_CLIENT_ID", "azure_client_id", "", "Entra app (client) id for Azure OpenAI without an API key."),
    Option("AZURE_CLIENT_SECRET", "azure_client_secret", "", "Entra client secret for Azure OpenAI.", secret=True),
    Option(
        "AZURE_AUTHORITY_HOST", "azure_authority_host", "https://login.microsoftonline.com", "Entra ID authority host."
    ),
    Option("WARDLINE_HOST", "host", "127.0.0.1", "Address `wardline serve` binds to."),
    Option("PORT", "port", "3978", "Port `wardline serve` listens on (WARDLINE_PORT also works)."),
    Option("WARDLINE_DATA_DIR", "data_dir", "var", "Folder for the SQLite database and other state."),
    Option(
        "WARDLINE_DATABASE_URL",
        "database_url",
        "",
        "SQLAlchemy async URL. Empty: sqlite under WARDLINE_DATA_DIR. PostgreSQL: postgresql+asyncpg://...",
        secret=True,
    ),
    Option("WARDLINE_PROTOCOLS_DIR", "protocols_dir", "", "Folder of protocol documents. Empty: the bundled samples."),
    Option(
        "WARDLINE_PROTOCOLS_BASE_URL",
        "protocols_base_url",
        "",
        "Where staff open the documents (intranet, SharePoint): citations link to this URL + the file's path.",
    ),
    Option("WARDLINE_EMBEDDINGS", "embeddings", "auto", "auto, azure, local or none (lexical retrieval only)."),
    Option(
        "WARDLINE_MIN_COVERAGE",
        "min_coverage",
        "0.35",
        "Share of a question's content words (IDF-weighted) a section must hold to be answered from.",
    ),
    Option(
        "WARDLINE_MIN_SIMILARITY",
        "min_similarity",
        "",
        "Dense similarity that alone makes a section answerable; empty: the model's own (local e5: never alone).",
    ),
    Option("WARDLINE_RESYNC_SECONDS", "resync_seconds", "900", "How often the protocol folder is re-read; 0: never."),
    Option("WARDLINE_ANSWER_TIMEOUT_S", "answer_timeout_s", "8", "Time budget for generating one answer, seconds."),
    Option("WARDLINE_LLM_REQUEST_TIMEOUT_S", "llm_request_timeout_s", "6", "Timeout of one Azure OpenAI request."),
    Option("WARDLINE_LLM_MAX_ATTEMPTS", "llm_max_attempts", "3", "Attempts per Azure OpenAI call (429/5xx/timeouts)."),
    Option("WARDLINE_STREAMING", "streaming", "true", "Stream generated answers in 1:1 chats."),
    Option("WARDLINE_STREAM_INTERVAL_S", "stream_interval_s", "1.2", "Seconds between streaming updates (Teams: 1-2)."),
    Option("WARDLINE_TIMEZONE", "timezone", "Asia/Seoul", "Timezone for schedules and displayed times."),
    Option("WARDLINE_LOG_LEVEL", "log_level", "INFO", "DEBUG, INFO, WARNING or ERROR."),
    Option("WARDLINE_LOG_FORMAT", "log_format", "text", "text for people, json for log collectors."),
    Option(
        "WARDLINE_OPENID_METADATA_URL",
        "openid_metadata_url",
        "",
        "Override the Bot Framework OpenID metadata URL (sovereign clouds, tests). Empty: public cloud.",
    ),
    Option("WARDLINE_PUBLIC_HOSTNAME", "public_hostname", "", "Host name Teams reaches the bot at (manifest)."),
    Option("WARDLINE_TEAMS_APP_ID", "teams_app_id", "", "Teams app id (manifest). Empty: derived from the bot id."),
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, validated once at start-up."""

    app_id: str = ""
    app_password: str = ""
    app_type: str = "MultiTenant"
    app_tenant_id: str = ""
    openai_endpoint: str = ""
    openai_api_key: str = ""
    openai_api_version: str = "2024-10-21"
    openai_chat_deployment: str = ""
    openai_embedding_deployment: str = ""
    azure_tenant_id: str = ""
    azure_client_id: str = ""
    azure_client_secret: str = ""
    azure_authority_host: str = "https://login.microsoftonline.com"
    host: str = "127.0.0.1"
    port: int = 3978
    data_dir: Path = Path("var")
    database_url: str = ""
    protocols_dir: Path | None = None
    protocols_base_url: str = ""
    embeddings: str = "auto"
    min_coverage: float = 0.35
    min_similarity: float | None = None  # None: the embedder's own calibrated floor
    resync_seconds: int = 900
    answer_timeout_s: float = 8.0
    llm_request_timeout_s: float = 6.0
    llm_max_attempts: int = 3
    streaming: bool = True
    stream_interval_s: float = 1.2
    timezone: str = "Asia/Seoul"
    log_level: str = "INFO"
    log_format: str = "text"
    openid_metadata_url: str = ""
    public_hostname: str = ""
    teams_app_id: str = ""

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'wardline.db'}"

    @property
    def chat_configured(self) -> bool:
        return bool(self.openai_endpoint and self.openai_chat_deployment)

    @property
    def azure_embeddings_configured(self) -> bool:
        return bool(self.openai_endpoint and self.openai_embedding_deployment)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def replace(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")) -> Settings:
        """Read settings from the environment, falling back to a .env file; raise SettingsError on bad values."""
        source: dict[str, str] = {}
        if env_file is not None and env_file.is_file():
            source.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        source.update(os.environ if environ is None else environ)
        if "PORT" not in source and "WARDLINE_PORT" in source:
            source["PORT"] = source["WARDLINE_PORT"]
        raw = {option.field: source.get(option.env, option.default).strip() for option in OPTIONS}
        return cls._parse(raw)

    @classmethod
    def _parse(cls, raw: dict[str, str]) -> Settings:
        def number(name: str, kind: type[int] | type[float], low: float, high: float) -> Any:
            env = _env_name(name)
            try:
                value = kind(raw[name])
            except ValueError:
                raise SettingsError(f"{env} must be a number, got {raw[name]!r}") from None
            if not low <= value <= high:
                raise SettingsError(f"{env} must be between {low:g} and {high:g}, got {value}")
            return value

        def flag(name: str) -> bool:
            value = raw[name].lower()
            if value in _TRUE:
                return True
            if value in _FALSE:
                return False
            raise SettingsError(f"{_env_name(name)} must be true or false, got {raw[name]!r}")

        def choice(name: str, allowed: tuple[str, ...], *, fold: bool = True) -> str:
            value = raw[name].lower() if fold else raw[name]
            if value not in allowed:
                raise SettingsError(f"{_env_name(name)} must be one of {', '.join(allowed)}; got {raw[name]!r}")
            return value

        try:
            ZoneInfo(raw["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(f"WARDLINE_TIMEZONE: unknown timezone {raw['timezone']!r}") from None
        app_type = choice("app_type", ("MultiTenant", "SingleTenant", "UserAssignedMSI"), fold=False)
        if app_type != "MultiTenant" and raw["app_id"] and not raw["app_tenant_id"]:
            raise SettingsError(f"MicrosoftAppTenantId is required when MicrosoftAppType is {app_type}")
        endpoint = raw["openai_endpoint"].rstrip("/")
        if endpoint and not endpoint.startswith(("https://", "http://")):
            raise SettingsError("AZURE_OPENAI_ENDPOINT must be a URL such as https://NAME.openai.azure.com")
        embeddings = choice("embeddings", ("auto", "azure", "local", "none"))
        base_url = raw["protocols_base_url"]
        if base_url and not base_url.startswith("https://"):
            raise SettingsError("WARDLINE_PROTOCOLS_BASE_URL must be an https:// URL (Teams opens citation links)")
        if base_url and not base_url.endswith("/"):
            base_url += "/"
        if embeddings == "azure" and not (endpoint and raw["openai_embedding_deployment"]):
            raise SettingsError("WARDLINE_EMBEDDINGS=azure needs AZURE_OPENAI_ENDPOINT and an embedding deployment")
        return cls(
            app_id=raw["app_id"],
            app_password=raw["app_password"],
            app_type=app_type,
            app_tenant_id=raw["app_tenant_id"],
            openai_endpoint=endpoint,
            openai_api_key=raw["openai_api_key"],
            openai_api_version=raw["openai_api_version"],
            openai_chat_deployment=raw["openai_chat_deployment"],
            openai_embedding_deployment=raw["openai_embedding_deployment"],
            azure_tenant_id=raw["azure_tenant_id"],
            azure_client_id=raw["azure_client_id"],
            azure_client_secret=raw["azure_client_secret"],
            azure_authority_host=raw["azure_authority_host"].rstrip("/"),
            host=raw["host"],
            port=number("port", int, 1, 65535),
            data_dir=Path(raw["data_dir"]),
            database_url=raw["database_url"],
            protocols_dir=Path(raw["protocols_dir"]) if raw["protocols_dir"] else None,
            protocols_base_url=base_url,
            embeddings=embeddings,
            min_coverage=number("min_coverage", float, 0, 1),
            min_similarity=number("min_similarity", float, 0, 1) if raw["min_similarity"] else None,
            resync_seconds=number("resync_seconds", int, 0, 7 * 24 * 3600),
            answer_timeout_s=number("answer_timeout_s", float, 1, 60),
            llm_request_timeout_s=number("llm_request_timeout_s", float, 0.5, 120),
            llm_max_attempts=number("llm_max_attempts", int, 1, 10),
            streaming=flag("streaming"),
            stream_interval_s=number("stream_interval_s", float, 0, 5),
            timezone=raw["timezone"],
            log_level=choice("log_level", ("debug", "info", "warning", "error")).upper(),
            log_format=choice("log_format", ("text", "json")),
            openid_metadata_url=raw["openid_metadata_url"],
            public_hostname=raw["public_hostname"],
            teams_app_id=raw["teams_app_id"],
        )


def _env_name(field_name: str) -> str:
    return next(o.env for o in OPTIONS if o.field == field_name)


def reference_table() -> str:
    """The configuration reference as a Markdown table (kept in the README; a test checks it is current)."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for option in OPTIONS:
        default = f"`{option.default}`" if option.default else "(empty)"
        rows.append(f"| `{option.env}` | {default} | {option.help} |")
    return "\n".join(rows)
