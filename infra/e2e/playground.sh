#!/usr/bin/env bash
# Microsoft 365 Agents Playground, the copy pinned in infra/e2e (installed by install.sh, nothing fetched at run time),
# pointed at the running Wardline bot. Prints the address to open; Ctrl-C stops it.
#   BOT_ENDPOINT   the bot's /api/messages URL (default: from Wardline's settings, WARDLINE_HOST and PORT)
#   PLAYGROUND_PORT  where the Playground serves its page (default 56150; it picks another if that one is taken)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PLAYGROUND="$HERE/node_modules/.bin/agentsplayground"
PYTHON="$ROOT/.venv/bin/python"
[ -x "$PYTHON" ] || PYTHON=python3

if [ ! -x "$PLAYGROUND" ]; then
  echo "playground: not installed at $PLAYGROUND; run: bash infra/e2e/install.sh" >&2
  exit 1
fi

if [ -z "${BOT_ENDPOINT:-}" ]; then
  BOT_ENDPOINT="$(cd "$ROOT" && "$PYTHON" -c '
from bot.settings import Settings
s = Settings.load()
host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
print(f"http://{host}:{s.port}/api/messages")')"
fi

# The bot must be up first: the Playground sends conversationUpdate as soon as a page connects.
if ! "$PYTHON" - "$BOT_ENDPOINT" <<'PY'
import sys
import urllib.request

health = sys.argv[1].rsplit("/api/messages", 1)[0] + "/healthz"
try:
    with urllib.request.urlopen(health, timeout=3) as response:  # noqa: S310 - our own loopback URL
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
PY
then
  echo "playground: no Wardline answers at $BOT_ENDPOINT; start it first with \`make run\` in another terminal" >&2
  exit 1
fi

export TEAMSAPPTESTER_BROWSER=none  # it would try to open a browser and exit where there is none
mkdir -p "$ROOT/var"
export M365_AGENTS_PLAYGROUND_LOGFILE="${M365_AGENTS_PLAYGROUND_LOGFILE:-$ROOT/var/playground.log}"
echo "playground: starting Microsoft 365 Agents Playground $(node -p "require('$HERE/node_modules/@microsoft/m365agentsplayground/package.json').version") for $BOT_ENDPOINT" >&2
"$PLAYGROUND" -e "$BOT_ENDPOINT" -c msteams -p "${PLAYGROUND_PORT:-56150}" --dt 2>&1 | while IFS= read -r line; do
  printf '%s\n' "$line"
  if [[ "$line" =~ Listening\ on\ ([0-9]+) ]]; then
    printf '\nplayground: open http://localhost:%s in a browser (Ctrl-C stops it)\n\n' "${BASH_REMATCH[1]}"
  fi
done
