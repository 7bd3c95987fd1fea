#!/usr/bin/env bash
# The demo: ingest the bundled sample documents, then answer one English and one Chinese question
# with citations. Re-running it is cheap: unchanged documents are recognised by content hash.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAG_DATA_DIR=${RAG_DATA_DIR:-./data}
rag=.venv/bin/rag

echo "== ingesting samples/ into knowledge base 'demo' (data dir: $RAG_DATA_DIR)"
$rag ingest --kb demo samples

for q in "What is the daily meal allowance on business trips at Aurora Robotics?" \
         "星河社区图书馆每人最多可以同时借阅几本书？"; do
  echo
  echo "== rag ask --kb demo \"$q\""
  $rag ask --kb demo "$q"
done
