from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import OPTIONS, Settings, SettingsError, reference_table

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_need_no_configuration(tmp_path: Path) -> None:
    settings = Settings.load({}, env_file=tmp_path / "missing.env")
    assert settings.port == 3978
    assert settings.host == "127.0.0.1"
    assert settings.database.startswith("sqlite+aiosqlite:///")
    assert not settings.chat_configured
    assert settings.timezone == "Asia/Seoul"


def test_conventional_names_are_read(tmp_path: Path) -> None:
    env = {
        "MicrosoftAppId": "app",
        "MicrosoftAppPassword": "secret",
        "MicrosoftAppType": "SingleTenant",
        "MicrosoftAppTenantId": "tenant",
        "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com/",
        "AZURE_OPENAI_CHAT_DEPLOYMENT": "gpt",
        "PORT": "8080",
    }
    settings = Settings.load(env, env_file=None)
    assert settings.app_type == "SingleTenant"
    assert settings.openai_endpoint == "https://x.openai.azure.com"
    assert settings.chat_configured
    assert settings.port == 8080


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("WARDLINE_LOG_LEVEL=debug\nPORT=4000\n")
    settings = Settings.load({"PORT": "5000"}, env_file=env_file)
    assert settings.log_level == "DEBUG"
    assert settings.port == 5000


def test_wardline_port_is_an_alias() -> None:
    assert Settings.load({"WARDLINE_PORT": "4100"}, env_file=None).port == 4100


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "eighty"}, "PORT must be a number"),
        ({"PORT": "70000"}, "PORT must be between"),
        ({"WARDLINE_STREAMING": "maybe"}, "WARDLINE_STREAMING must be true or false"),
        ({"WARDLINE_TIMEZONE": "Mars/Olympus"}, "unknown timezone"),
        ({"WARDLINE_EMBEDDINGS": "magic"}, "WARDLINE_EMBEDDINGS must be one of"),
        ({"WARDLINE_EMBEDDINGS": "azure"}, "needs AZURE_OPENAI_ENDPOINT"),
        ({"MicrosoftAppId": "a", "MicrosoftAppType": "SingleTenant"}, "MicrosoftAppTenantId is required"),
        ({"MicrosoftAppType": "Whatever"}, "MicrosoftAppType must be one of"),
        ({"AZURE_OPENAI_ENDPOINT": "x.openai.azure.com"}, "must be a URL"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.load(env, env_file=None)


def test_readme_configuration_reference_is_current() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert reference_table() in readme, "regenerate the README table with `wardline config --reference`"


def test_env_example_lists_every_setting() -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    names = {line.split("=", 1)[0] for line in example.splitlines() if line and not line.startswith("#")}
    assert names == {option.env for option in OPTIONS}
    assert "\n.env\n" in (ROOT / ".gitignore").read_text(encoding="utf-8")
