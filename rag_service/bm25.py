"""Okapi BM25 over a sparse term-document matrix.

Scores equal ``rank_bm25.BM25Okapi`` (k1=1.5, b=0.75, epsilon=0.25: terms in more than half the
corpus get ``epsilon * mean idf`` instead of a negative idf), but a query costs one sparse
column slice and a mat-vec, not a Python loop over every document.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np
from scipy import sparse


class BM25Index:
    def __init__(self, k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25) -> None:
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self.ids: list[str] = []
        self._vocab: dict[str, int] = {}
        self._weights = sparse.csc_matrix((0, 0), dtype=np.float64)

    def __len__(self) -> int:
        return len(self.ids)

    def build(self, docs: Iterable[tuple[str, list[str]]]) -> BM25Index:
        ids: list[str] = []
        rows: list[int] = []
        cols: list[int] = []
        tfs: list[int] = []
        lengths: list[int] = []
        vocab: dict[str, int] = {}
        for row, (doc_id, tokens) in enumerate(docs):
            ids.append(doc_id)
            lengths.append(len(tokens))
            for term, tf in Counter(tokens).items():
                rows.append(row)
                cols.append(vocab.setdefault(term, len(vocab)))
                tfs.append(tf)
        n_docs = len(ids)
        self.ids, self._vocab = ids, vocab
        if n_docs == 0:
            self._weights = sparse.csc_matrix((0, 0), dtype=np.float64)
            return self

        tf = np.asarray(tfs, dtype=np.float64)
        row_idx = np.asarray(rows, dtype=np.int64)
        col_idx = np.asarray(cols, dtype=np.int64)
        doc_len = np.asarray(lengths, dtype=np.float64)
        avgdl = doc_len.sum() / n_docs
        df = np.bincount(col_idx, minlength=len(vocab)).astype(np.float64)
        idf = np.log(n_docs - df + 0.5) - np.log(df + 0.5)
        floor = self.epsilon * (idf.sum() / len(idf)) if len(idf) else 0.0
        idf = np.where(idf < 0, floor, idf)
        norm = self.k1 * (1 - self.b + self.b * doc_len[row_idx] / avgdl) if avgdl else self.k1
        weight = idf[col_idx] * tf * (self.k1 + 1) / (tf + norm)
        self._weights = sparse.csc_matrix((weight, (row_idx, col_idx)), shape=(n_docs, len(vocab)))
        return self

    def _query(self, query_tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(score of every document, rows that contain at least one query term)."""
        counts = Counter(t for t in query_tokens if t in self._vocab)
        if not counts or not self.ids:
            return np.zeros(len(self.ids)), np.zeros(0, dtype=np.int64)
        columns = self._weights[:, [self._vocab[t] for t in counts]]
        mult = np.asarray(list(counts.values()), dtype=np.float64)
        # The matrix keeps explicit zeros, so its structure says "contains the term" even when the
        # term's idf is 0 or negative (tiny corpora): such documents still match, ranked by score.
        return np.asarray(columns @ mult).ravel(), np.unique(columns.indices)

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        """BM25 score of every document; a repeated query term counts again, as in rank_bm25."""
        return self._query(query_tokens)[0]

    def top(self, query_tokens: list[str], n: int) -> list[tuple[str, float]]:
        """The ``n`` best (id, score) pairs among documents sharing a term with the query, best first."""
        scores, matched = self._query(query_tokens)
        if matched.size > n:
            matched = matched[np.argpartition(-scores[matched], n - 1)[:n]]
        order = matched[np.argsort(-scores[matched], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in order]
