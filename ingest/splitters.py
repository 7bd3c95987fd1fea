"""Splitters: one contract, ``split(Document) -> list[Chunk]``, and a registry by name."""

from __future__ import annotations

from abc import ABC, abstractmethod

from langchain_text_splitters import RecursiveCharacterTextSplitter

from rag_service.errors import ConfigError
from rag_service.records import Chunk, Document

# Paragraphs, lines, then sentence ends (Chinese full-width first), clauses, words, characters.
SEPARATORS = ["\n\n", "\n", "。", "！", "？", "；", "…", ". ", "! ", "? ", "; ", "，", ", ", " ", ""]


class Splitter(ABC):
    name: str

    @abstractmethod
    def split(self, doc: Document) -> list[Chunk]: ...


class RecursiveSplitter(Splitter):
    """LangChain's recursive splitter with Chinese and English sentence separators (sizes in characters)."""

    name = "recursive"

    def __init__(self, chunk_size: int, chunk_overlap: int) -> None:
        if chunk_size < 1 or not 0 <= chunk_overlap < chunk_size:
            raise ConfigError(f"need 0 <= chunk_overlap < chunk_size, got {chunk_overlap} and {chunk_size}")
        self._splitter = RecursiveCharacterTextSplitter(
            chunk_size=chunk_size, chunk_overlap=chunk_overlap, separators=SEPARATORS,
            keep_separator="end", add_start_index=True, strip_whitespace=True,
        )

    def split(self, doc: Document) -> list[Chunk]:
        chunks = []
        for position, piece in enumerate(self._splitter.create_documents([doc.text])):
            start = int(piece.metadata["start_index"])
            chunks.append(Chunk(id=f"{doc.id}:{position}", doc_id=doc.id, source=doc.source,
                                text=piece.page_content, position=position, start=start,
                                end=start + len(piece.page_content), metadata=dict(doc.metadata)))
        return chunks


SPLITTERS: dict[str, type[Splitter]] = {RecursiveSplitter.name: RecursiveSplitter}


def make_splitter(name: str, chunk_size: int, chunk_overlap: int) -> Splitter:
    try:
        cls = SPLITTERS[name]
    except KeyError:
        raise ConfigError(f"unknown splitter '{name}' (choose from {', '.join(sorted(SPLITTERS))})") from None
    return cls(chunk_size, chunk_overlap)
