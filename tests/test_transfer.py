"""``rag export`` / ``rag import`` end to end: the real CLI, bundled e5, embedded Chroma, SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import shutil
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag_service.admin import transfer
from rag_service.admin.documents import delete_kb
from rag_service.errors import InvalidInputError, RagError
from rag_service.retrieval.search import MODES, Retriever
from rag_service.settings import Settings
from rag_service.workspace import Workspace
from tests.conftest import SAMPLES, rag_json, run_rag

QUERIES = ("meal allowance", "图书馆每人最多借几本书")


def snapshot(data_dir: Path, kb_name: str, database_url: str | None = None) -> dict[str, Any]:
    """Everything an import must reproduce: KB settings, documents, every chunk (text, offsets, metadata, tokens,
    unindexed parents included) and the stored vectors. Not compared: ids of the KB, creation times."""
    ws = Workspace(Settings(data_dir=data_dir, database_url=database_url))
    try:
        kb = ws.catalog.get_kb(kb_name)
        docs = ws.catalog.documents(kb.id)
        chunks = {d.id: ws.catalog.document_chunks(kb.id, d.id) for d in docs}
        indexed = [c.id for rows in chunks.values() for c, tokens in rows if tokens is not None]
        vectors = ws.vectors.vectors(kb.collection, indexed)
        return {
            "kb": (kb.embedder, kb.dim, kb.splitter, kb.chunk_size, kb.chunk_overlap, kb.chunk_unit, kb.options),
            "documents": sorted((d.id, d.source, d.sha256, d.status, d.chunks, d.chars, d.created) for d in docs),
            "chunks": chunks,
            "indexed": len(indexed),
            "vector_count": ws.vectors.count(kb.collection),
            "vectors": vectors,
        }
    finally:
        ws.close()


def assert_same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal, vectors up to float32 rounding: Chroma normalises cosine vectors again on insert, which may move an
    already unit-length vector by an ulp (the exported bytes are exactly what Chroma returned)."""
    assert {k: v for k, v in got.items() if k != "vectors"} == {k: v for k, v in expected.items() if k != "vectors"}
    assert got["vectors"].keys() == expected["vectors"].keys()
    for cid, vector in expected["vectors"].items():
        np.testing.assert_allclose(got["vectors"][cid], vector, rtol=0, atol=1e-6, err_msg=cid)


def top_hits(data_dir: Path, database_url: str | None = None) -> dict[tuple[str, str], list[str]]:
    """Chunk ids, in order, of a search for each query and mode, in this process (eighteen `rag search` processes
    cost most of this module's time; the CLI's search output is tested in test_ingest_search.py)."""
    ws = Workspace(Settings(data_dir=data_dir, database_url=database_url))
    try:
        retriever = Retriever(ws, ws.catalog.get_kb("samples"))
        return {(q, m): [h.chunk.id for h in retriever.search(q, mode=m)] for q in QUERIES for m in MODES}
    finally:
        ws.close()


def test_round_trip_sqlite_postgres_sqlite(sample_dir: Path, postgres_url: str, tmp_path: Path) -> None:
    original = snapshot(sample_dir, "samples")
    assert original["vector_count"] == original["indexed"] == sum(len(c) for c in original["chunks"].values())
    expected_hits = top_hits(sample_dir)
    assert all(expected_hits.values())
    counts = {"kb": "samples", "documents": len(original["documents"]),
              "chunks": sum(len(c) for c in original["chunks"].values())}

    first = tmp_path / "samples.jsonl.gz"
    assert rag_json("export", "--kb", "samples", str(first), data_dir=sample_dir) == {**counts, "file": str(first)}
    assert first.read_bytes()[:2] == b"\x1f\x8b"

    pg_dir, pg_env = tmp_path / "pg", {"RAG_DATABASE_URL": postgres_url}
    assert rag_json("import", str(first), data_dir=pg_dir, env=pg_env) == counts
    assert_same(snapshot(pg_dir, "samples", postgres_url), original)
    assert top_hits(pg_dir, postgres_url) == expected_hits

    second = tmp_path / "from-postgres.jsonl"  # gzip whatever the suffix
    run_rag("export", "--kb", "samples", str(second), data_dir=pg_dir, env=pg_env)
    back = tmp_path / "back"
    assert rag_json("import", str(second), data_dir=back) == counts
    assert_same(snapshot(back, "samples"), original)
    assert top_hits(back) == expected_hits


@pytest.mark.slow
def test_truncated_file_is_refused_and_changes_nothing(sample_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Chosen behaviour: all or nothing. The file is checked in full before anything is written, so a damaged file
    creates no KB and ``--replace`` keeps the existing one; a failure after that check deletes the new KB again."""
    good = tmp_path / "samples.jsonl.gz"
    run_rag("export", "--kb", "samples", str(good), data_dir=sample_dir)
    raw = good.read_bytes()
    text = gzip.decompress(raw).decode("utf-8")
    lines = text.split("\n")  # the file ends with a newline: the last item is empty
    bad = {
        "lines": gzip.compress("\n".join([*lines[:-4], ""]).encode()),  # whole lines lost, the end line with them
        "bytes": raw[: len(raw) // 2],  # the compressed stream cut short
        "mid-line": text[: len(text) - len(lines[-2]) - 40].encode(),  # plain JSON Lines cut inside a chunk
    }
    data = tmp_path / "data"
    for name, content in bad.items():
        path = tmp_path / f"cut-{name}.jsonl.gz"
        path.write_bytes(content)
        proc = run_rag("import", str(path), data_dir=data, check=False)
        assert proc.returncode != 0, name
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert "truncated" in proc.stderr and str(path) in proc.stderr, proc.stderr
        assert rag_json("kbs", data_dir=data)["kbs"] == [], name

    rag_json("import", str(good), data_dir=data)
    proc = run_rag("import", "--replace", str(tmp_path / "cut-lines.jsonl.gz"), data_dir=data, check=False)
    assert proc.returncode != 0
    docs = rag_json("docs", "list", "--kb", "samples", data_dir=data)["documents"]
    assert len(docs) == 4 and {d["status"] for d in docs} == {"ready"}

    # The file changing between the check and the import (simulated by skipping the check): rolled back.
    monkeypatch.setattr(transfer, "_check", lambda *args, **kw: None)
    ws = Workspace(Settings(data_dir=data))
    try:
        with pytest.raises(InvalidInputError, match="truncated"):
            transfer.import_kb(ws, tmp_path / "cut-lines.jsonl.gz", name="half")
        assert [kb.name for kb in ws.catalog.list_kbs()] == ["samples"]
    finally:
        ws.close()


@pytest.mark.slow
def test_name_clash_and_parent_chunks(tmp_path: Path) -> None:
    docs, data = tmp_path / "docs", tmp_path / "data"
    docs.mkdir()
    shutil.copy(SAMPLES / "en" / "greenleaf-tea-farm.txt", docs)
    run_rag("ingest", "--kb", "pc", "--splitter", "parent_child", "--chunk-size", "120", "--chunk-overlap", "20",
            str(docs), data_dir=data)
    before = snapshot(data, "pc")
    parents = [c for rows in before["chunks"].values() for c, tokens in rows if tokens is None]
    assert parents and all(c.metadata["role"] == "parent" for c in parents)

    file = tmp_path / "pc.jsonl.gz"
    run_rag("export", "--kb", "pc", str(file), data_dir=data)
    clash = run_rag("import", str(file), data_dir=data, check=False)
    assert clash.returncode == 1
    assert "'pc' already exists" in clash.stderr and "--replace" in clash.stderr and "--kb" in clash.stderr

    total = sum(len(rows) for rows in before["chunks"].values())
    assert rag_json("import", "--kb", "pc copy", str(file), data_dir=data) == {"kb": "pc copy", "documents": 1,
                                                                               "chunks": total}
    assert_same(snapshot(data, "pc copy"), before)

    # Another tokenizer version in the file: tokens are made again here; a vector missing: embedded again.
    records = [json.loads(line) for line in gzip.decompress(file.read_bytes()).decode("utf-8").split("\n") if line]
    records[0]["kb"]["options"]["tokenizer"] = "0-older"
    dropped = next(r for r in records if r.get("type") == "chunk" and r["vector"] is not None)
    dropped["vector"] = None
    for r in records:
        if r.get("tokens") is not None:
            r["tokens"] = ["stale"]
    edited = tmp_path / "edited.jsonl"  # plain JSON Lines are read too
    edited.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    proc = run_rag("import", "--kb", "pc retok", str(edited), data_dir=data)
    assert "1 chunks came without a vector and were embedded again" in proc.stderr
    retok = snapshot(data, "pc retok")
    assert retok["chunks"] == before["chunks"] and retok["vector_count"] == before["indexed"]
    assert float(retok["vectors"][dropped["id"]] @ before["vectors"][dropped["id"]]) > 0.999

    old_id = {k["name"]: k["id"] for k in rag_json("kbs", data_dir=data)["kbs"]}["pc"]
    assert rag_json("import", "--replace", str(file), data_dir=data)["kb"] == "pc"
    kbs = {k["name"]: k["id"] for k in rag_json("kbs", data_dir=data)["kbs"]}
    assert set(kbs) == {"pc", "pc copy", "pc retok"} and kbs["pc"] != old_id
    assert_same(snapshot(data, "pc"), before)


# -- hostile files: an import is checked like an ingest ------------------------------------------------------
@pytest.fixture(scope="module")
def hostile_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, Path]]:
    """A workspace to import into, and a good export of two parent_child documents made in this process."""
    from rag_service.ingestion.pipeline import Ingestor, SplitOptions

    root = tmp_path_factory.mktemp("hostile")
    ws = Workspace(Settings(data_dir=root / "data"))
    try:
        ingestor, _ = Ingestor.open(ws, "src", SplitOptions("parent_child", 120, 20))
        results = ingestor.run([SAMPLES / "en" / "greenleaf-tea-farm.txt",
                                SAMPLES / "en" / "aurora-robotics-handbook.md"])
        assert {r.status for r in results} == {"added"}
        good = root / "good.jsonl.gz"
        transfer.export_kb(ws, "src", good)
        yield ws, good
    finally:
        ws.close()


def records_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode("utf-8").split("\n") if line]


def write_records(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(gzip.compress("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()))
    return path


def refused(ws: Workspace, path: Path, line: int, match: str, *, replace: bool = False) -> None:
    """The import is refused naming the line, and leaves nothing: no new KB, the other KBs as they were."""
    before = sorted((kb.id, kb.name) for kb in ws.catalog.list_kbs())
    with pytest.raises(RagError, match=match) as caught:
        transfer.import_kb(ws, path, name="src" if replace else f"x-{uuid.uuid4().hex[:8]}", replace=replace)
    assert f"line {line}:" in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
    assert sorted((kb.id, kb.name) for kb in ws.catalog.list_kbs()) == before


def test_a_huge_line_is_refused_without_reading_it(tmp_path: Path) -> None:
    """A 64 MB header line in a gzip of a few hundred KB: refused after max_import_line_mb (1 MB here), with memory
    bounded by the cap (the old reader held the whole line, decoded: 4.2 GB RSS for a 1.5 GB line)."""
    path = tmp_path / "bomb.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=6) as out:
        out.write(b'{"format": "rag-service-kb", "version": 1, "exported": "')
        block = b"a" * (1 << 20)
        for _ in range(64):
            out.write(block)
    assert path.stat().st_size < 1 << 20
    limits = transfer.ImportLimits.of(Settings(max_import_line_mb=1))
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInputError, match=r"line 1: longer than 1,048,576 bytes \(max_import_line_mb\)"):
            transfer.ExportReader(path, limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MB"

    data = tmp_path / "data"
    proc = run_rag("import", str(path), data_dir=data, env={"RAG_MAX_IMPORT_LINE_MB": "1"}, check=False)
    assert proc.returncode != 0
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "line 1" in proc.stderr and "max_import_line_mb" in proc.stderr, proc.stderr
    assert rag_json("kbs", data_dir=data)["kbs"] == []


def one_document_export(path: Path, chunks: int, duplicate: int | None = None) -> Path:
    """A valid export of one document of ``chunks`` chunks (vectors null); chunk ``duplicate`` repeats the id of
    the chunk before it."""
    unit = "Meal allowances are paid monthly. "
    sha = hashlib.sha256(b"one document").hexdigest()
    doc_id = sha[:16]
    records: list[dict[str, Any]] = [
        {"format": transfer.FORMAT, "version": transfer.VERSION, "exported": "2024-01-01",
         "kb": {"name": "big", "embedder": "e5", "dim": 384, "splitter": "recursive", "chunk_size": 400,
                "chunk_overlap": 0, "chunk_unit": "chars", "options": {}}, "documents": 1, "chunks": chunks},
        {"type": "document", "id": doc_id, "source": "big.txt", "sha256": sha, "chars": chunks * len(unit),
         "created": "2024-01-01T00:00:00+00:00"}]
    for i in range(chunks):
        records.append({"type": "chunk", "id": f"{doc_id}:{i - (i == duplicate)}", "doc_id": doc_id,
                        "source": "big.txt", "position": i, "text": unit, "start": i * len(unit),
                        "end": (i + 1) * len(unit), "metadata": {}, "tokens": ["meal"], "vector": None})
    records.append({"type": "end", "documents": 1, "chunks": chunks})
    return write_records(path, records)


def test_the_duplicate_check_is_linear(tmp_path: Path) -> None:
    """20,000 chunks of one document are checked in a few times the time of a bare parse of the file (the pairwise
    check took 150 times as long; bench/import_bench.py measures it); a repeated chunk id is still refused, naming
    its line. A ratio measured in the same run, best of three each, so a busy machine slows both sides."""
    limits = transfer.ImportLimits.of(Settings())
    path = one_document_export(tmp_path / "big.jsonl.gz", 20_000)

    def bare() -> float:
        started = time.perf_counter()
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                json.loads(line)
        return time.perf_counter() - started

    def check() -> float:
        started = time.perf_counter()
        with transfer.ExportReader(path, limits) as reader:
            transfer._check(path, reader.header, limits, False)
        return time.perf_counter() - started

    ratio = min(check() for _ in range(3)) / min(bare() for _ in range(3))
    assert ratio < 30, f"the check pass took {ratio:.0f} times as long as a bare parse"  # about 3 here

    path = one_document_export(tmp_path / "dup.jsonl.gz", 50, duplicate=30)
    with transfer.ExportReader(path, limits) as reader, \
            pytest.raises(InvalidInputError, match=r"line 33: chunk \w+:29 appears twice"):
        list(reader.documents())


def _kb(records: list[dict[str, Any]], **changes: Any) -> int:
    records[0]["kb"].update(changes)
    return 1


def _options(records: list[dict[str, Any]], **changes: Any) -> int:
    records[0]["kb"]["options"].update(changes)
    return 1


SETTINGS_CASES: dict[str, tuple[Any, str]] = {
    "negative chunk size": (lambda r: _kb(r, chunk_size=-5), "chunk_size must be between 20 and"),
    "huge overlap": (lambda r: _kb(r, chunk_overlap=10**9), "chunk_overlap must be between 0 and half"),
    "splitter by path": (lambda r: _kb(r, splitter="../../nope"), "unknown splitter '../../nope'"),
    "unknown chunk unit": (lambda r: _kb(r, chunk_unit="bytes"), "chunk_unit must be one of chars, tokens"),
    "embedder by path": (lambda r: _kb(r, embedder="/tmp"), "embedder '/tmp' is a model path"),
    "reranker option": (lambda r: _options(r, rerank="/tmp"), "'rerank' are not options of a knowledge base"),
    "tokenizer not a string": (lambda r: _options(r, tokenizer=5), "option 'tokenizer' is not a string"),
    "glossary too long": (
        lambda r: _options(r, glossary=[{"id": f"e{n}", "terms": [f"{n}" + "x" * 300, f"y{n}"]}
                                        for n in range(5000)]),
        "a glossary holds at most 2000 entries"),
    "glossary term too long": (
        lambda r: _options(r, glossary=[{"id": "e1", "terms": ["x" * 300, "y"]}]), "at most 64 printable"),
    "glossary entry of one term": (
        lambda r: _options(r, glossary=[{"id": "e1", "terms": ["SFT", "sft"]}]), "names 2-12 different terms"),
    "glossary term in two entries": (
        lambda r: _options(r, glossary=[{"id": "a", "terms": ["SFT", "fine-tuning"]},
                                        {"id": "b", "terms": ["RLHF", "Fine tuning"]}]),
        "glossary entry 2: term 'fine tuning' is in an earlier entry too"),
    "glossary ids repeated": (
        lambda r: _options(r, glossary=[{"id": "a", "terms": ["SFT", "fine-tuning"]},
                                        {"id": "a", "terms": ["RLHF", "feedback"]}]), "id 'a' is used twice"),
    "glossary not a list": (lambda r: _options(r, glossary={"SFT": "fine-tuning"}), "a glossary is a list"),
}


@pytest.mark.parametrize("case", SETTINGS_CASES)
def test_settings_and_glossary_are_checked_like_a_new_kb(hostile_ws: tuple[Workspace, Path], tmp_path: Path,
                                                          case: str) -> None:
    """The KB settings in the header go through ``build_splitter`` (as for `rag ingest` and POST /v1/kbs), its
    glossary through ``check_glossary`` (as for an edit), and a model path is not loaded from a file's word;
    refused before anything is written, the KB that --replace would have deleted still there."""
    ws, good = hostile_ws
    mutate, message = SETTINGS_CASES[case]
    records = records_of(good)
    line = mutate(records)
    path = write_records(tmp_path / "bad.jsonl.gz", records)
    refused(ws, path, line, re.escape(message))
    refused(ws, path, line, re.escape(message), replace=True)


def _chunks(records: list[dict[str, Any]], doc: int = 0) -> list[int]:
    """Indexes of the chunk records of the ``doc``-th document."""
    starts = [i for i, r in enumerate(records) if r.get("type") == "document"]
    end = starts[doc + 1] if doc + 1 < len(starts) else len(records) - 1
    return list(range(starts[doc] + 1, end))


def _set(records: list[dict[str, Any]], index: int, **changes: Any) -> int:
    records[index].update(changes)
    return index + 1


def _second_child(records: list[dict[str, Any]]) -> int:
    return next(i for i in _chunks(records) if records[i]["metadata"].get("role") == "child"
                and i != next(j for j in _chunks(records) if records[j]["metadata"].get("role") == "child"))


def _pages(records: list[dict[str, Any]], pages: list[int]) -> None:
    for i, page in zip(sorted(_chunks(records), key=lambda i: records[i]["start"]), pages, strict=False):
        records[i]["metadata"]["page"] = page


def _decreasing_page(records: list[dict[str, Any]]) -> int:
    order = sorted(_chunks(records), key=lambda i: records[i]["start"])
    _pages(records, [1] * len(order))
    records[order[0]]["metadata"]["page"] = 2
    return order[1] + 1


def _one_page(records: list[dict[str, Any]]) -> int:
    chunks = _chunks(records)
    records[chunks[1]]["metadata"]["page"] = 7
    return chunks[0] + 1


def _same_source(records: list[dict[str, Any]]) -> int:
    second = next(i for i, r in enumerate(records) if r.get("type") == "document" and i > 1)
    return _set(records, second, source=records[1]["source"])


def _nan_vector(records: list[dict[str, Any]]) -> int:
    i = _second_child(records)
    vector = np.frombuffer(base64.b64decode(records[i]["vector"]), dtype="<f4").copy()
    vector[3] = np.nan
    return _set(records, i, vector=base64.b64encode(vector.astype("<f4").tobytes()).decode())


PROVENANCE_CASES: dict[str, tuple[Any, str]] = {
    "chunk source": (lambda r: _set(r, _second_child(r), source="other.txt"), "is not its document's"),
    "chunk id of another document": (lambda r: _set(r, _second_child(r), id="0123456789abcdef:0"),
                                     "starts with"),
    "document id not its sha256": (lambda r: _set(r, 1, sha256="f" * 64), "not the first 16 digits of its sha256"),
    "text other than its offsets": (lambda r: _set(r, _second_child(r), text="forged text"),
                                    "its offsets say"),
    "offsets past the document": (lambda r: _set(r, _second_child(r), start=10**6, end=10**6),
                                  "are not inside its document"),
    "page on one chunk only": (_one_page, "has no page where the other chunks"),
    "pages going back": (_decreasing_page, "after page 2"),
    "page zero": (lambda r: (_pages(r, [0] * 99), _chunks(r)[0] + 1)[1], "page 0 is not a page"),
    "parent of nowhere": (lambda r: (r[_second_child(r)]["metadata"].update(parent_id="x:p0"),
                                     _second_child(r) + 1)[1], "is not a parent section of"),
    "parent of another document": (
        lambda r: (r[_chunks(r, 1)[1]]["metadata"].update(parent_id=r[_chunks(r)[0]]["id"]), _chunks(r, 1)[1] + 1)[1],
        "is not a parent section of"),
    "child not indexed": (lambda r: _set(r, _second_child(r), tokens=None, vector=None),
                          "only a parent section"),
    "NaN vector": (_nan_vector, "NaN or infinity"),
    "two documents of one source": (_same_source, "a second document named"),
    "created not a date": (lambda r: _set(r, 1, created="yesterday"), "'created' is not an ISO date"),
}


@pytest.mark.parametrize("case", PROVENANCE_CASES)
def test_chunks_must_agree_with_their_document(hostile_ws: tuple[Workspace, Path], tmp_path: Path,
                                               case: str) -> None:
    """Chosen behaviour: a chunk that contradicts its document (source, id, text, offsets, page, parent) is refused
    with its line, never repaired: ``rag export`` never writes one."""
    ws, good = hostile_ws
    mutate, message = PROVENANCE_CASES[case]
    records = records_of(good)
    line = mutate(records)
    refused(ws, write_records(tmp_path / "bad.jsonl.gz", records), line, re.escape(message))


def test_pages_and_a_glossary_that_agree_are_imported(hostile_ws: tuple[Workspace, Path], tmp_path: Path) -> None:
    ws, good = hostile_ws
    records = records_of(good)
    _pages(records, [1, 1, 2, 2, 2, 3] + [4] * 99)
    _options(records, glossary=[{"id": "e1", "terms": ["tea farm", "茶园"]}])
    path = write_records(tmp_path / "paged.jsonl.gz", records)
    result = transfer.import_kb(ws, path, name="paged")
    try:
        kb = ws.catalog.get_kb("paged")
        assert result.documents == 2 and kb.options["glossary"] == [{"id": "e1", "terms": ["tea farm", "茶园"]}]
        doc_id = records[1]["id"]
        pages = [c.metadata["page"] for c, _ in sorted(ws.catalog.document_chunks(kb.id, doc_id),
                                                         key=lambda row: row[0].start)]
        assert pages[:3] == [1, 1, 2]
    finally:
        delete_kb(ws, ws.catalog.get_kb("paged"))
