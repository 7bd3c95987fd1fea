"""Okapi BM25 that scales: term-frequency postings in sparse segments, updated in place, saved to disk.

Scores equal ``rank_bm25.BM25Okapi`` (k1=1.5, b=0.75, epsilon=0.25: a term in more than half the
corpus gets ``epsilon * mean idf`` instead of a negative idf). The index stores raw term frequencies,
not weights, because idf and the average length move with every change; weights are computed per
query from the postings of the query's terms only, so a query costs O(postings), not O(corpus).

Adding documents appends a new segment; deleting marks rows dead. ``compact`` folds segments and
drops dead rows once they pile up. Nothing is rebuilt per query or per document.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy import sparse

_STATE = "state.npz"


class BM25Index:
    def __init__(self, k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25) -> None:
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self.ids: list[str] = []
        self._docs: list[str] = []  # the document of each row, to drop a document's rows together
        self._rows_of: dict[str, list[int]] = {}
        self._row: dict[str, int] = {}
        self._live = np.zeros(0, dtype=bool)
        self._len = np.zeros(0, dtype=np.float64)
        self._vocab: dict[str, int] = {}
        self._terms: list[str] = []
        self._df = np.zeros(0, dtype=np.int64)
        self._segments: list[tuple[int, sparse.csc_matrix]] = []  # (first row, rows x terms tf)
        self.revision = -1
        self.tokenizer = ""
        self._floor: float | None = None  # epsilon x mean idf over the vocabulary: cached until df changes
        # Each row's length normalisation k1 * (1 - b + b * len / avgdl): cached until rows change, so a query
        # does not average a million lengths again (bench/retrieval_bench.py at 1M chunks).
        self._norm: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self._live.sum())

    def __contains__(self, chunk_id: str) -> bool:
        row = self._row.get(chunk_id)
        return row is not None and bool(self._live[row])

    def live_ids(self) -> set[str]:
        return {self.ids[i] for i in np.flatnonzero(self._live)}

    # -- updates ----------------------------------------------------------------------------------
    def build(self, items: Iterable[tuple[str, str, list[str]]]) -> BM25Index:
        self.__init__(self.k1, self.b, self.epsilon)  # type: ignore[misc]
        self.add(items)
        return self

    def add(self, items: Iterable[tuple[str, str, list[str]]]) -> None:
        """Append (document id, chunk id, tokens) rows as one new segment; a chunk id already present
        is replaced."""
        docs = list(items)
        self.remove([chunk_id for _, chunk_id, _ in docs if chunk_id in self._row])
        if not docs:
            return
        first = len(self.ids)
        rows, cols, tfs, lengths = [], [], [], []
        for offset, (doc, chunk_id, tokens) in enumerate(docs):
            self._row[chunk_id] = first + offset
            self._rows_of.setdefault(doc, []).append(first + offset)
            self.ids.append(chunk_id)
            self._docs.append(doc)
            lengths.append(len(tokens))
            for term, tf in Counter(tokens).items():
                col = self._vocab.get(term)
                if col is None:
                    col = self._vocab[term] = len(self._terms)
                    self._terms.append(term)
                rows.append(offset)
                cols.append(col)
                tfs.append(tf)
        n_terms = len(self._terms)
        segment = sparse.csc_matrix(
            (np.asarray(tfs, dtype=np.float32), (np.asarray(rows), np.asarray(cols, dtype=np.int64))),
            shape=(len(docs), n_terms))
        self._segments.append((first, segment))
        self._df = np.concatenate([self._df, np.zeros(n_terms - len(self._df), dtype=np.int64)])
        np.add.at(self._df, np.asarray(cols, dtype=np.int64), 1)
        self._floor = self._norm = None
        self._live = np.concatenate([self._live, np.ones(len(docs), dtype=bool)])
        self._len = np.concatenate([self._len, np.asarray(lengths, dtype=np.float64)])

    def remove_document(self, doc_id: str) -> None:
        self.remove([self.ids[r] for r in self._rows_of.pop(doc_id, [])])

    def remove(self, chunk_ids: Iterable[str]) -> None:
        popped = [self._row.pop(c) for c in chunk_ids if c in self._row]
        rows = np.asarray([r for r in popped if self._live[r]], dtype=np.int64)
        if not rows.size:
            return
        self._live[rows] = False
        self._floor = self._norm = None
        for first, segment in self._segments:
            local = rows[(rows >= first) & (rows < first + segment.shape[0])] - first
            if local.size:
                # The removed rows' postings: one vectorised pass over the segment, then their columns.
                positions = np.flatnonzero(np.isin(segment.indices, local))
                cols = np.searchsorted(segment.indptr, positions, side="right") - 1
                np.subtract.at(self._df, cols, 1)

    def _segment_of(self, row: int) -> tuple[int, sparse.csc_matrix]:  # few segments: a scan is fine
        for first, segment in reversed(self._segments):
            if row >= first:
                return first, segment
        raise KeyError(row)

    def needs_compaction(self) -> bool:
        dead = len(self.ids) - len(self)
        return len(self._segments) > 16 or (dead > 1000 and dead > 0.2 * len(self.ids))

    def compact(self) -> None:
        """One segment with live rows only; row numbers change, ids do not."""
        keep = np.flatnonzero(self._live)
        width = len(self._terms)
        merged = sparse.vstack([self._pad(seg, width) for _, seg in self._segments], format="csr")[keep]
        self.ids = [self.ids[i] for i in keep]
        self._docs = [self._docs[i] for i in keep]
        self._live = np.ones(len(keep), dtype=bool)
        self._len = self._len[keep]
        self._segments = [(0, merged.tocsc())] if len(keep) else []
        self._norm = None
        self._index_rows()

    def _index_rows(self) -> None:
        self._row, self._rows_of = {}, {}
        for i in np.flatnonzero(self._live):
            self._row[self.ids[i]] = int(i)
            self._rows_of.setdefault(self._docs[i], []).append(int(i))

    @staticmethod
    def _pad(segment: sparse.csc_matrix, width: int) -> sparse.csc_matrix:
        if segment.shape[1] == width:
            return segment
        return sparse.csc_matrix((segment.data, segment.indices,
                                  np.concatenate([segment.indptr, np.full(width - segment.shape[1],
                                                                          segment.indptr[-1])])),
                                 shape=(segment.shape[0], width))

    # -- scoring ----------------------------------------------------------------------------------
    def _idf(self, cols: np.ndarray) -> np.ndarray:
        n = len(self)
        if self._floor is None:  # a pass over the whole vocabulary: once per change, not per query
            present = self._df > 0
            all_idf = np.log(n - self._df[present] + 0.5) - np.log(self._df[present] + 0.5)
            self._floor = float(self.epsilon * all_idf.mean()) if all_idf.size else 0.0
        idf = np.log(n - self._df[cols] + 0.5) - np.log(self._df[cols] + 0.5)
        return np.where(idf < 0, self._floor, idf)

    def _query(self, query_tokens: list[str],
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(score of every row, live rows that contain a query term), restricted to ``allowed`` rows."""
        counts = Counter(t for t in query_tokens if t in self._vocab)
        scores = np.zeros(len(self.ids))
        if not counts or not len(self):
            return scores, np.zeros(0, dtype=np.int64)
        cols = np.asarray([self._vocab[t] for t in counts], dtype=np.int64)
        mult = np.asarray(list(counts.values()), dtype=np.float64)
        idf = self._idf(cols) * mult
        if self._norm is None:
            avgdl = self._len[self._live].mean()
            self._norm = self.k1 * (1 - self.b + self.b * self._len / avgdl)
        norms = self._norm
        matched = np.zeros(len(self.ids), dtype=bool)  # a mask, not a sort of every posting (np.unique)
        for first, segment in self._segments:
            for j, col in enumerate(cols):
                if col >= segment.shape[1]:
                    continue
                lo, hi = segment.indptr[col], segment.indptr[col + 1]
                if lo == hi:
                    continue
                rows = segment.indices[lo:hi] + first
                tf = segment.data[lo:hi].astype(np.float64)
                scores[rows] += idf[j] * tf * (self.k1 + 1) / (tf + norms[rows])  # rows are unique per column
                matched[rows] = True
        matched &= self._live
        if allowed is not None:
            matched &= allowed
        return scores, np.flatnonzero(matched)

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        """BM25 score of every live document, in insertion order (dead rows are dropped)."""
        return self._query(query_tokens)[0][self._live]

    def allowed_rows(self, chunk_ids: Iterable[str]) -> np.ndarray:
        mask = np.zeros(len(self.ids), dtype=bool)
        rows = [self._row[c] for c in chunk_ids if c in self._row]
        mask[rows] = True
        return mask

    def top(self, query_tokens: list[str], n: int, allowed: np.ndarray | None = None) -> list[tuple[str, float]]:
        """The ``n`` best (id, score) pairs among documents sharing a term with the query, best first.
        A document that contains a query term matches even when tiny corpora make every idf <= 0."""
        scores, matched = self._query(query_tokens, allowed)
        if matched.size > n:
            matched = matched[np.argpartition(-scores[matched], n - 1)[:n]]
        order = matched[np.argsort(-scores[matched], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in order]

    def matched_terms(self, query_tokens: list[str], chunk_id: str) -> list[str]:
        """The query terms that occur in one document (for --explain)."""
        row = self._row.get(chunk_id)
        if row is None:
            return []
        first, segment = self._segment_of(row)
        out = []
        for term in dict.fromkeys(query_tokens):
            col = self._vocab.get(term)
            if col is not None and col < segment.shape[1] and segment[row - first, col] > 0:
                out.append(term)
        return out

    # -- persistence ------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write segments (immutable, written once) and then the state that names them, atomically."""
        directory.mkdir(parents=True, exist_ok=True)
        names = []
        for first, segment in self._segments:
            name = getattr(segment, "_saved_as", None)
            if name is None or not (directory / name).exists():
                name = f"seg-{uuid.uuid4().hex}.npz"
                sparse.save_npz(directory / name, segment, compressed=False)
                segment._saved_as = name
            names.append((first, name))
        meta = {"revision": self.revision, "tokenizer": self.tokenizer, "segments": names,
                "params": [self.k1, self.b, self.epsilon]}
        tmp = directory / f"{_STATE}.{os.getpid()}.tmp"
        with tmp.open("wb") as fh:
            np.savez(fh, ids=np.asarray(self.ids, dtype=str), docs=np.asarray(self._docs, dtype=str),
                     terms=np.asarray(self._terms, dtype=str),
                     live=self._live, length=self._len, df=self._df, meta=np.asarray(json.dumps(meta)))
        tmp.replace(directory / _STATE)
        for stale in directory.glob("seg-*.npz"):
            if stale.name not in {n for _, n in names}:
                stale.unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: Path) -> BM25Index | None:
        """The saved index, or None when there is none (or it cannot be read: it is rebuilt then)."""
        try:
            with np.load(directory / _STATE) as state:
                meta = json.loads(str(state["meta"]))
                index = cls(*meta["params"])
                index.ids = state["ids"].tolist()
                index._docs = state["docs"].tolist()
                index._terms = state["terms"].tolist()
                index._live, index._len, index._df = state["live"], state["length"], state["df"]
            index._index_rows()
            index._vocab = {t: i for i, t in enumerate(index._terms)}
            for first, name in meta["segments"]:
                segment = sparse.load_npz(directory / name).tocsc()
                segment._saved_as = name
                index._segments.append((first, segment))
            index.revision, index.tokenizer = meta["revision"], meta["tokenizer"]
            return index
        except (OSError, KeyError, ValueError):
            return None
