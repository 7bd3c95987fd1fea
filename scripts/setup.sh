#!/usr/bin/env bash
# Creates .venv in the checkout and installs everything the project needs, offline-model safe.
# Order matters: torch first (the CPU build on disk; an unpinned torch pulls GBs of CUDA), then
# llama-cpp-python compiled with portable flags (the default -march=native build dies with SIGILL on
# these machines' AMX path), then the project itself with every model package pinned.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
LLAMA_CPP_VERSION=0.3.36
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"

if [ ! -x "$VENV/bin/python" ]; then
  echo ">> creating $VENV"
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }

echo ">> torch (CPU build)"
pip install -q torch==2.13.0

if ! "$VENV/bin/python" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_CPP_VERSION')" 2>/dev/null; then
  echo ">> llama-cpp-python $LLAMA_CPP_VERSION (portable AVX2 build; ~7 min cold, cached afterwards)"
  CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="$LLAMA_CMAKE_ARGS" pip install -q "llama-cpp-python==$LLAMA_CPP_VERSION"
fi

echo ">> rag-service and its pinned dependencies"
pip install -q -c constraints.txt -e ".[llm,eval,dev]"
# The web console's browser tests drive Debian's Chromium through Playwright (`playwright install` would need a
# CDN). Installed when this runs as root with apt; otherwise those tests skip and say why.
if ! [ -x /usr/lib/chromium/chromium ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo ">> chromium and CJK fonts for the browser tests (apt)"
    (apt-get install -y -q chromium fonts-noto-cjk >/dev/null 2>&1 \
      || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium fonts-noto-cjk >/dev/null 2>&1)) \
      || echo ">> could not install chromium: the browser tests will be skipped"
  else
    echo ">> no chromium and not root: the browser tests will be skipped (apt-get install -y chromium fonts-noto-cjk)"
  fi
fi
# The database tests start a throwaway PostgreSQL (tests/postgres.py) from Debian's server binaries, else from the
# pgserver wheel (PostgreSQL 16 + pgvector, ~30 MB), installed only when apt cannot provide Debian's; else they skip.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  pg_via_apt=no
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo ">> postgresql for the database tests (apt)"
    if (apt-get install -y -q postgresql >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q postgresql >/dev/null 2>&1)) \
        && compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
      pg_via_apt=yes
    else
      echo ">> could not install postgresql with apt"
    fi
  fi
  if [ "$pg_via_apt" = no ] && "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(bool(u.find_spec('pgserver')))"; then
    echo ">> pgserver (a bundled PostgreSQL) for the database tests"
    pip install -q -c constraints.txt pgserver==0.1.4 \
      || echo ">> no PostgreSQL server: the database tests will be skipped (apt-get install -y postgresql)"
  fi
fi
echo ">> set-up done"
