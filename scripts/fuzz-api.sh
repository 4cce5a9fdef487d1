#!/usr/bin/env bash
# Property-based fuzz of the API from its OpenAPI document (schemathesis, from PyPI).
# Installs schemathesis for this user when it is missing, then runs scripts/fuzz-api.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v schemathesis >/dev/null 2>&1; then
  echo "Installing schemathesis (PyPI)…"
  python3 -m pip install --quiet --user 'schemathesis>=4,<5'
  export PATH="$HOME/.local/bin:$PATH"
fi
exec npx tsx scripts/fuzz-api.ts
