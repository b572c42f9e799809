"""Azure OpenAI without an API key: Entra ID client-credential tokens from msal, against a local HTTPS fake."""

from __future__ import annotations

import datetime
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from bot.llm import COGNITIVE_SCOPE, AzureChat, AzureOpenAIClient, EntraTokenProvider
from bot.settings import Settings, SettingsError
from skills.core.ports import ChatMessage
from tests.fakes.azure_openai import FakeAzureOpenAI

TENANT = "contoso-hospital"


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class FakeEntra:
    """OpenID discovery and the v2.0 token endpoint of one tenant, over TLS, on a thread (msal blocks)."""

    def __init__(self, folder: Path) -> None:
        self.cert, key = self_signed(folder)
        self.token_requests: list[dict[str, list[str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _json(self, body: dict[str, Any], status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                base = f"{fake.url}/{TENANT}"
                self._json(
                    {
                        "token_endpoint": f"{base}/oauth2/v2.0/token",
                        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                        "issuer": f"{base}/v2.0",
                    }
                )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(length).decode())
                fake.token_requests.append(form)
                if form.get("client_secret") != ["s3cret"]:
                    self._json({"error": "invalid_client", "error_description": "bad secret"}, 401)
                    return
                self._json({"access_token": "entra-token-1", "token_type": "Bearer", "expires_in": 3600})

            def log_message(self, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"

    def session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # this machine's REQUESTS_CA_BUNDLE would override `verify`
        session.verify = str(self.cert)
        return session

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def entra(tmp_path: Path) -> Iterator[FakeEntra]:
    fake = FakeEntra(tmp_path)
    yield fake
    fake.close()


def entra_settings(entra: FakeEntra, secret: str = "s3cret", **extra: Any) -> Settings:
    return Settings().replace(
        azure_tenant_id=TENANT, azure_client_id="wardline-app", azure_client_secret=secret,
        azure_authority_host=entra.url, **extra,
    )  # fmt: skip


async def test_tokens_come_from_entra_and_are_cached(entra: FakeEntra) -> None:
    provider = EntraTokenProvider(entra_settings(entra), http_client=entra.session(), instance_discovery=False)
    assert await provider() == "entra-token-1"
    assert await provider() == "entra-token-1"
    assert len(entra.token_requests) == 1, "msal's cache serves the second call"
    request = entra.token_requests[0]
    assert request["grant_type"] == ["client_credentials"]
    assert request["scope"] == [COGNITIVE_SCOPE]


async def test_chat_calls_carry_the_entra_token(entra: FakeEntra) -> None:
    async with FakeAzureOpenAI() as openai_fake:
        openai_fake.bearer_token = "entra-token-1"
        openai_fake.answer = "MAP 65 mmHg [1]"
        settings = entra_settings(
            entra, openai_endpoint=openai_fake.url, openai_chat_deployment="chat", openai_api_key=""
        )
        provider = EntraTokenProvider(settings, http_client=entra.session(), instance_discovery=False)
        from openai import AsyncAzureOpenAI

        client = AsyncAzureOpenAI(
            azure_endpoint=settings.openai_endpoint,
            api_version=settings.openai_api_version,
            azure_ad_token_provider=provider,
            max_retries=0,
        )
        chat = AzureChat(AzureOpenAIClient(settings, client=client), budget_s=5)
        assert await chat.complete([ChatMessage("user", "MAP?")]) == "MAP 65 mmHg [1]"
        headers = openai_fake.requests_for("chat")[0].headers
        assert headers["authorization"] == "Bearer entra-token-1"
        assert "api-key" not in headers
        await client.close()


async def test_a_rejected_secret_is_an_llm_error(entra: FakeEntra) -> None:
    from skills.core.ports import LLMError

    provider = EntraTokenProvider(entra_settings(entra, "wrong"), http_client=entra.session(), instance_discovery=False)
    with pytest.raises(LLMError, match="invalid_client"):
        await provider()


def test_missing_entra_settings_are_named() -> None:
    with pytest.raises(SettingsError, match="AZURE_TENANT_ID"):
        EntraTokenProvider(Settings())
