"""Feedback as a recall signal: chunks cited by an up-voted answer to a close question join the fusion as a
'feedback' list (shown by explain); a close down-voted answer's chunks never do; unrelated questions are untouched."""

from __future__ import annotations

from pathlib import Path

from rag_service.retrieval.search import Retriever
from rag_service.settings import Settings
from rag_service.workspace import Workspace
from tests.conftest import run_rag

DOCS = {
    "leave.txt": "Annual leave: staff get 25 days a year. Unused days expire at the end of March.",
    "parking.txt": "Parking: the garage under Building C has 40 spaces, booked through the facilities desk.",
    "travel.txt": "Travel: the daily meal allowance on business trips is 45 euros; taxis need a receipt.",
}


def test_up_votes_boost_their_chunks_for_close_questions_and_down_votes_veto(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    run_rag("ingest", "--kb", "fb", str(docs), data_dir=tmp_path / "data")
    ws = Workspace(Settings(data_dir=tmp_path / "data", feedback_boost=True, feedback_boost_similarity=0.85))
    kb = ws.catalog.get_kb("fb")
    retriever = Retriever(ws, kb)
    parking = next(h.chunk for h in retriever.search("garage spaces", mode="bm25")
                   if h.chunk.source.endswith("parking.txt"))
    question = "Where can I park my car at the office?"
    assert all("feedback" not in h.ranks for h in retriever.search(question))

    ws.feedback.add(kb.id, "Where do I park my car at work?", "In the garage under Building C.", "up",
                    citations=[{"chunk_id": parking.id, "doc_id": parking.doc_id, "source": parking.source}])
    hits = retriever.run(question, explain=True).hits
    boosted = [h for h in hits if "feedback" in h.ranks]
    assert [h.chunk.id for h in boosted] == [parking.id] and hits[0].chunk.id == parking.id
    assert boosted[0].scores["feedback"] >= 0.85 and "feedback" in boosted[0].to_json(explain=True)["explain"]
    assert all("feedback" not in h.ranks for h in retriever.search("How many days of annual leave do I get?"))

    ws.feedback.add(kb.id, "Where should I park my car at the office?", "Anywhere.", "down",
                    citations=[{"chunk_id": parking.id, "doc_id": parking.doc_id}])
    assert all("feedback" not in h.ranks for h in retriever.search(question))  # vetoed by the close down-vote
    off = Workspace(Settings(data_dir=tmp_path / "data"))  # off by default
    assert all("feedback" not in h.ranks for h in Retriever(off, kb).search(question))
    ws.close()
    off.close()
