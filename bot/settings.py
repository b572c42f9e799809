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
    Option(
        "WARDLINE_PROTOCOLS_DIR",
        "protocols_dir",
        "",
        "Folder of protocol documents. Empty: the folder last indexed by `wardline ingest`, else the samples.",
    ),
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
    # Teams boundary (issue 6): connector timeouts, the reply window, and which tenants the bot answers.
    Option(
        "WARDLINE_CONNECTOR_TIMEOUT_S",
        "connector_timeout_s",
        "10",
        "Timeout of one Bot Connector request (replies, updates, proactive posts), seconds.",
    ),
    Option(
        "WARDLINE_REPLY_WINDOW_S",
        "reply_window_s",
        "12",
        "Seconds after a message arrives in which its reply is sent within the turn; later ones go to the outbox.",
    ),
    Option(
        "WARDLINE_ALLOWED_TENANTS",
        "allowed_tenants",
        "",
        "Entra tenant ids the bot answers (comma list). Empty: MicrosoftAppTenantId. `*`: any (MultiTenant only).",
    ),
    Option("WARDLINE_PUBLIC_HOSTNAME", "public_hostname", "", "Host name Teams reaches the bot at (manifest)."),
    Option("WARDLINE_TEAMS_APP_ID", "teams_app_id", "", "Teams app id (manifest). Empty: derived from the bot id."),
    # Staff directory and Entra groups (bot/directory.py, bot/graph.py)
    Option(
        "WARDLINE_DIRECTORY",
        "directory",
        "",
        "TOML file of units, staff and roles (example: bot/directory.example.toml). Empty: no units, no roles.",
    ),
    Option(
        "WARDLINE_DIRECTORY_RELOAD_SECONDS",
        "directory_reload_seconds",
        "60",
        "How often the directory file is re-read (also on SIGHUP); a bad file keeps the previous one. 0: SIGHUP only.",
    ),
    Option(
        "WARDLINE_GRAPH_CACHE_SECONDS",
        "graph_cache_seconds",
        "900",
        "How long a person's Entra group memberships ([[groups]] in the directory) are cached.",
    ),
    Option(
        "WARDLINE_GRAPH_URL", "graph_url", "https://graph.microsoft.com", "Microsoft Graph endpoint (national clouds)."
    ),
    # Privacy and clinical safety (issue 6)
    Option(
        "WARDLINE_DATABASE_TIMEOUT_S",
        "database_timeout_s",
        "5",
        "Bound on connecting to the database, each statement, a pooled connection and the /readyz write, seconds.",
    ),
    Option(
        "WARDLINE_RETENTION_DAYS",
        "retention_days",
        "30",
        "Days masked questions, answers and chat history are kept; a daily job deletes older ones.",
    ),
    Option(
        "WARDLINE_MAX_QUESTION_CHARS",
        "max_question_chars",
        "2000",
        "Longest question answered; longer messages get a polite request to shorten them.",
    ),
    Option(
        "WARDLINE_EMERGENCY_TEXT",
        "emergency_text",
        "",
        "Shown first when an English question describes an emergency, e.g. 'Call the rapid response team on 1234 "
        "now.' Empty: a generic instruction to call the hospital's emergency number.",
    ),
    Option(
        "WARDLINE_EMERGENCY_TEXT_KO",
        "emergency_text_ko",
        "",
        "The same instruction for Korean questions. Empty: a generic Korean instruction.",
    ),
    # Device alerts (IHE PCD ACM): the MLLP listener, the signed webhook, where technical alerts go.
    Option("WARDLINE_MLLP_ENABLED", "mllp_enabled", "true", "Run the MLLP listener for device gateways (HL7 v2)."),
    Option("WARDLINE_MLLP_HOST", "mllp_host", "127.0.0.1", "Address the MLLP listener binds to."),
    Option("WARDLINE_MLLP_PORT", "mllp_port", "2575", "Port of the MLLP listener (0: any free port)."),
    Option(
        "WARDLINE_MLLP_IDLE_TIMEOUT_S",
        "mllp_idle_timeout_s",
        "300",
        "Close an MLLP connection silent this long (idle or half-open); gateways reconnect.",
    ),
    Option(
        "WARDLINE_ALERTS_MAX_BYTES",
        "alerts_max_bytes",
        "65536",
        "Largest HL7 message or webhook body accepted; larger ones are refused with a reason (NAK, 413).",
    ),
    Option(
        "WARDLINE_ALERTS_WEBHOOK_SECRET",
        "alerts_webhook_secret",
        "",
        "HMAC secret(s) of POST /api/alerts, comma-separated for rotation. Empty: the webhook is off (404).",
        secret=True,
    ),
    Option(
        "WARDLINE_BIOMED_TARGET",
        "biomed_target",
        "",
        "Where device-link-down alerts also go (e.g. unit:BIOMED), besides the unit.",
    ),
    Option("WARDLINE_ALERTS_LOCALE", "alerts_locale", "en", "Language of alarm cards (en or ko); a unit may override."),
    # The Teams app package's developer block: the hospital that runs the bot (`wardline manifest build`).
    Option("WARDLINE_DEVELOPER_NAME", "developer_name", "", "Who runs this bot, shown in Teams (manifest)."),
    Option("WARDLINE_WEBSITE_URL", "website_url", "", "https:// page about the bot at your hospital (manifest)."),
    Option("WARDLINE_PRIVACY_URL", "privacy_url", "", "https:// privacy statement for staff (manifest; required)."),
    Option("WARDLINE_TERMS_URL", "terms_url", "", "https:// terms of use (manifest; required)."),
    # --- proactive delivery (outbox)
    Option(
        "WARDLINE_FALLBACK_CHANNEL",
        "fallback_channel",
        "",
        "Teams conversation id for posts to a unit with no channel. Empty: the first team channel the bot joined.",
    ),
    Option("WARDLINE_OUTBOX_GLOBAL_RATE", "outbox_global_rate", "50", "Bot-wide sends per second (Teams: about 50)."),
    Option("WARDLINE_OUTBOX_LEASE_S", "outbox_lease_s", "30", "Seconds a dead replica's claimed posts stay locked."),
    Option("WARDLINE_OUTBOX_POLL_S", "outbox_poll_s", "0.25", "How often the outbox looks for other processes' posts."),
    Option("WARDLINE_OUTBOX_SEND_TIMEOUT_S", "outbox_send_timeout_s", "10", "Timeout of one Bot Connector request."),
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
    directory: Path | None = None
    directory_reload_seconds: int = 60
    graph_cache_seconds: int = 900
    graph_url: str = "https://graph.microsoft.com"
    database_timeout_s: float = 5.0
    retention_days: int = 30
    max_question_chars: int = 2000
    emergency_text: str = ""
    emergency_text_ko: str = ""
    mllp_enabled: bool = True
    mllp_host: str = "127.0.0.1"
    mllp_port: int = 2575
    mllp_idle_timeout_s: float = 300.0
    alerts_max_bytes: int = 65536
    alerts_webhook_secret: str = ""
    biomed_target: str = ""
    alerts_locale: str = "en"

    @property
    def alerts_webhook_secrets(self) -> list[str]:
        return [secret.strip() for secret in self.alerts_webhook_secret.split(",") if secret.strip()]

    developer_name: str = ""
    website_url: str = ""
    privacy_url: str = ""
    terms_url: str = ""
    connector_timeout_s: float = 10.0
    reply_window_s: float = 12.0
    allowed_tenants: tuple[str, ...] = ()
    insecure_anonymous: bool = False  # only from `wardline serve --insecure-anonymous`, never from the environment
    fallback_channel: str = ""
    outbox_global_rate: int = 50
    outbox_lease_s: float = 30.0
    outbox_poll_s: float = 0.25
    outbox_send_timeout_s: float = 10.0

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
    def tenant_allowlist(self) -> frozenset[str] | None:
        """Tenants whose activities are answered; None: no check (anonymous mode with no list, or an explicit `*`)."""
        if "*" in self.allowed_tenants:
            if self.app_type != "MultiTenant":
                raise SettingsError("WARDLINE_ALLOWED_TENANTS=* is allowed only with MicrosoftAppType=MultiTenant")
            return None
        tenants = frozenset(t.lower() for t in self.allowed_tenants if t)
        if not tenants and self.app_tenant_id:
            tenants = frozenset({self.app_tenant_id.lower()})
        if not tenants and self.app_id:
            raise SettingsError(
                "set WARDLINE_ALLOWED_TENANTS to your hospital's Entra tenant id (or MicrosoftAppTenantId); "
                "use * only if a MultiTenant bot must answer every tenant"
            )
        return tenants or None

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
        raw = {option.field: value for option, value, _origin in _sources(environ, env_file)}
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

        def https_url(name: str) -> str:
            value = raw[name]
            if value and not value.startswith("https://"):
                raise SettingsError(f"{_env_name(name)} must be an https:// URL, got {value!r}")
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
        if "*" in raw["allowed_tenants"].split(",") and app_type != "MultiTenant":
            raise SettingsError("WARDLINE_ALLOWED_TENANTS=* is allowed only with MicrosoftAppType=MultiTenant")
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
            directory=Path(raw["directory"]) if raw["directory"] else None,
            directory_reload_seconds=number("directory_reload_seconds", int, 0, 24 * 3600),
            graph_cache_seconds=number("graph_cache_seconds", int, 0, 24 * 3600),
            graph_url=_graph_url(raw["graph_url"]),
            database_timeout_s=number("database_timeout_s", float, 0.5, 120),
            retention_days=number("retention_days", int, 1, 3650),
            max_question_chars=number("max_question_chars", int, 100, 30000),
            emergency_text=raw["emergency_text"],
            emergency_text_ko=raw["emergency_text_ko"],
            mllp_enabled=flag("mllp_enabled"),
            mllp_host=raw["mllp_host"],
            mllp_port=number("mllp_port", int, 0, 65535),
            mllp_idle_timeout_s=number("mllp_idle_timeout_s", float, 1, 24 * 3600),
            alerts_max_bytes=number("alerts_max_bytes", int, 1024, 16 * 1024 * 1024),
            alerts_webhook_secret=raw["alerts_webhook_secret"],
            biomed_target=raw["biomed_target"],
            alerts_locale=choice("alerts_locale", ("en", "ko")),
            developer_name=raw["developer_name"],
            website_url=https_url("website_url"),
            privacy_url=https_url("privacy_url"),
            terms_url=https_url("terms_url"),
            connector_timeout_s=number("connector_timeout_s", float, 1, 60),
            reply_window_s=number("reply_window_s", float, 1, 60),
            allowed_tenants=tuple(t.strip() for t in raw["allowed_tenants"].split(",") if t.strip()),
            fallback_channel=raw["fallback_channel"],
            outbox_global_rate=number("outbox_global_rate", int, 1, 1000),
            outbox_lease_s=number("outbox_lease_s", float, 2, 600),
            outbox_poll_s=number("outbox_poll_s", float, 0.01, 10),
            outbox_send_timeout_s=number("outbox_send_timeout_s", float, 0.5, 60),
        )


def offline_model_environment() -> None:
    """Before a local model library is imported: never reach a model hub, no tokenizer thread pools."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _graph_url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise SettingsError("WARDLINE_GRAPH_URL must be a URL such as https://graph.microsoft.com")
    return value.rstrip("/")


def _sources(environ: Mapping[str, str] | None, env_file: Path | None) -> list[tuple[Option, str, str]]:
    """Each option's raw value and where it came from: "env", ".env" or "default"."""
    from_file: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        from_file = {k: v for k, v in dotenv_values(env_file).items() if v is not None}
    from_env = dict(os.environ if environ is None else environ)
    for layer in (from_file, from_env):
        if "PORT" not in layer and "WARDLINE_PORT" in layer:
            layer["PORT"] = layer["WARDLINE_PORT"]
    rows: list[tuple[Option, str, str]] = []
    for option in OPTIONS:
        if option.env in from_env:
            rows.append((option, from_env[option.env].strip(), "env"))
        elif option.env in from_file:
            rows.append((option, from_file[option.env].strip(), ".env"))
        else:
            rows.append((option, option.default, "default"))
    return rows


def effective_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> list[tuple[str, str, str]]:
    """(variable, value, origin) for every option as `Settings.load` sees it, secrets masked."""
    rows = []
    for option, value, origin in _sources(environ, env_file):
        rows.append((option.env, mask_secret(value) if option.secret else value, origin))
    return rows


def mask_secret(value: str) -> str:
    """A secret shown as set or empty, never its characters; a URL keeps its scheme so its kind stays visible."""
    if not value:
        return ""
    scheme, sep, _rest = value.partition("://")
    return f"{scheme}://********" if sep and scheme.isascii() and "@" not in scheme else "********"


def _env_name(field_name: str) -> str:
    return next(o.env for o in OPTIONS if o.field == field_name)


def reference_table() -> str:
    """The configuration reference as a Markdown table (kept in the README; a test checks it is current)."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for option in OPTIONS:
        default = f"`{option.default}`" if option.default else "(empty)"
        rows.append(f"| `{option.env}` | {default} | {option.help} |")
    return "\n".join(rows)
