"""CSV and TSV: each row one record of 'header: value' lines."""

from __future__ import annotations

import csv
import io
import itertools

from rag_service.errors import InvalidInputError
from rag_service.ingestion.formats.common import LoadContext, Loaded, clean, reason


def _csv_delimiter(text: str) -> str:
    """csv.Sniffer guesses wildly on small files; the delimiter that splits the header widest and the most rows to
    the header's width is a steadier choice."""
    best, best_score = ",", (0, 0)
    sample = text[:20000]
    for delimiter in (",", ";", "\t"):
        try:
            rows = [r for r in itertools.islice(csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter), 30)
                    if r]
        except csv.Error:
            continue
        width = len(rows[0]) if rows else 0
        score = (sum(len(r) == width for r in rows), width)
        if width > 1 and score > best_score:
            best, best_score = delimiter, score
    return best


def load_csv(text: str, ctx: LoadContext) -> Loaded:
    """Each row becomes one record of 'header: value' lines, so a chunk of it still says what each value is."""
    source = ctx.source
    delimiter = _csv_delimiter(text)
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise InvalidInputError(f"{source}: not valid CSV ({reason(exc)})") from None
    if not rows:
        raise InvalidInputError(f"{source}: no text in the file")
    header = [name.strip() for name in rows[0]]
    records = []
    for row in rows[1:]:
        lines = [
            f"{header[i] if i < len(header) and header[i] else f'column {i + 1}'}: {value.strip()}"
            for i, value in enumerate(row) if value.strip()
        ]
        records.append("\n".join(lines))
    if not records:
        raise InvalidInputError(f"{source}: only a header row, no data rows")
    return Loaded(clean("\n\n".join(records)), {"records": len(records), "delimiter": delimiter})


