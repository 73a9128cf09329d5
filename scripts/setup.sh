#!/usr/bin/env bash
# Create .venv and install mmfer with its test extras, pinned by constraints.txt.
# Uses uv when it can (about 10x faster than pip); falls back to pip.
# --test: also install headless Chromium + chromedriver (Debian packages) for the demo's browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--test" ] && ! { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; }; then
    echo "installing chromium and chromium-driver (apt) for the browser test"
    $SUDO apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: no apt-get/root: install Chromium + chromedriver yourself, or the browser test is skipped"
  fi
fi
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if command -v uv >/dev/null 2>&1 || "$PY" -m pip install -q uv >/dev/null 2>&1; then
    UV=$(command -v uv || echo "$PY -m uv")
    $UV venv -q -p "$PY" .venv
  else
    "$PY" -m venv .venv
  fi
fi
if command -v uv >/dev/null 2>&1 || "$PY" -m uv --version >/dev/null 2>&1; then
  UV=$(command -v uv || echo "$PY -m uv")
  $UV pip install -q -p .venv/bin/python -c constraints.txt -e ".[test,hf]"
else
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[test,hf]"
fi
.venv/bin/python -c "import mmfer, torch; print(f'mmfer ready (torch {torch.__version__})')"
