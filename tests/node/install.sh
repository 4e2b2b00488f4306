#!/usr/bin/env bash
# Installs the npm packages the email checks use (tests/node/package.json: the official
# MJML validator and axe-core) into a cache folder outside the repository, so a fresh
# clone reuses them. Quick and quiet when they are already there; says why and exits 0
# when npm is missing (the tests that need them then skip with that reason).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="${DIGEST_TEST_NODE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/weekly-verdict-digest/node}"
if ! command -v npm >/dev/null 2>&1; then
  echo "node tools: npm not found; the MJML validator and axe-core checks will skip"
  exit 0
fi
mkdir -p "$target"
if cmp -s "$here/package.json" "$target/package.json" && [ -f "$target/.installed" ]; then
  exit 0
fi
cp "$here/package.json" "$target/package.json"
echo "node tools: npm install into $target"
(cd "$target" && npm install --no-audit --no-fund --no-package-lock --silent)
touch "$target/.installed"
