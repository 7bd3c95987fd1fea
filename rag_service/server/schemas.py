"""Request bodies. Unknown fields are refused (a typo is an error, not a silently ignored option), except
in the OpenAI-compatible body, where clients routinely send options this service does not use."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag_service.admin.people import MAX_KEY_DAYS, MAX_USER_NAME
from rag_service.errors import InvalidInputError
from rag_service.retrieval.search import Mode
from rag_service.settings import ChunkUnit, Fusion, Policy
from rag_service.storage.catalog import MAX_KB_NAME
from rag_service.storage.feedback import Rating
from rag_service.storage.people import Level, Role
from rag_service.text.language import Language

MAX_QUESTION = 4000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateKnowledgeBase(_Strict):
    name: str = Field(min_length=1, max_length=MAX_KB_NAME)
    splitter: str | None = Field(None, description="structure, recursive, sentence, markdown, semantic or "
                                   "parent_child (default: the server's RAG_SPLITTER)")
    chunk_size: int | None = Field(None, ge=20)
    chunk_overlap: int | None = Field(None, ge=0)
    chunk_unit: ChunkUnit | None = None
    embedder: Literal["e5", "minilm"] | None = Field(None, description="fixed for the KB's lifetime")


class SearchRequest(_Strict):
    query: str = Field(min_length=1, max_length=MAX_QUESTION)
    k: int | None = Field(None, ge=1, le=200)
    mode: Mode = "hybrid"
    fusion: Fusion | None = None
    filter: dict[str, str | int | float | bool | list[str]] | None = Field(
        None, description="doc_id (one or a list), source (a glob) or chunk metadata fields by equality")
    pseudo_feedback: int | None = Field(None, ge=0, le=50, description="search the vectors again with the query "
                                        "moved towards the first N fused results when they are close to each "
                                        "other; 0 off (default: the server's RAG_PSEUDO_FEEDBACK, 5 for e5 KBs)")
    explain: bool = False


class ChatRequest(_Strict):
    question: str = Field(min_length=1, max_length=MAX_QUESTION)
    session_id: str | None = Field(None, description="continue a conversation; omitted: a new session")
    stream: bool = Field(False, description="Server-Sent Events (also chosen by Accept: text/event-stream)")
    k: int | None = Field(None, ge=1, le=50)
    explain: bool = Field(False, description="add 'trace': the hits with each retriever's rank and score, "
                          "which were packed, the exact messages sent to the model and the checks")


class FeedbackIn(_Strict):
    kb: str = Field(min_length=1, max_length=200, description="knowledge base name or id")
    question: str = Field(min_length=1, max_length=MAX_QUESTION)
    answer: str = Field(min_length=1, max_length=20_000)
    rating: Rating
    comment: str | None = Field(None, max_length=4000)
    session_id: str | None = Field(None, max_length=64)
    citations: list[dict[str, Any]] | None = Field(None, max_length=50, description="the answer's citations")


class FeedbackCreated(BaseModel):
    id: str


class FeedbackOut(BaseModel):
    id: str
    kb: str
    question: str
    answer: str
    rating: Rating
    comment: str | None
    session_id: str | None
    citations: list[dict[str, Any]]
    created: str


class FeedbackList(BaseModel):
    feedback: list[FeedbackOut]


class JobFile(BaseModel):
    source: str
    status: Literal["pending", "added", "replaced", "unchanged", "failed", "cancelled"] = Field(
        description="pending: not ingested yet; cancelled: its job was cancelled before reaching it")
    doc_id: str | None = None
    chunks: int | None = None
    error: str | None = None


class UploadedDocument(BaseModel):
    id: str = Field(description="the document id ingestion will assign (its sha256 prefix)")
    source: str = Field(description="the file's base name: the document's source")
    sha256: str
    bytes: int
    status: Literal["queued"]


class UploadAccepted(BaseModel):
    job_id: str = Field(description="poll GET /v1/jobs/{job_id} (also in the Location header)")
    status: Literal["queued"]
    documents: list[UploadedDocument]


class FusionOut(BaseModel):
    method: Fusion
    bm25_weight: float = Field(description="BM25's weight when the method is weighted (the vector list gets the rest)")
    pseudo_feedback: int = Field(0, description="first fused results the vector query is moved towards before the "
                                 "vectors are searched again (0: no pseudo-relevance feedback)")
    pseudo_feedback_weight: float = Field(1.0, description="how far: query + this x their mean vector")
    pseudo_feedback_min_coherence: float = Field(
        -1.0, description="feedback acts only when those results are this close to each other (mean pairwise cosine)")


class KnowledgeBaseOut(BaseModel):
    id: str
    name: str
    embedder: str
    dim: int
    splitter: str
    chunk_size: int
    chunk_overlap: int
    chunk_unit: ChunkUnit
    created: str
    language: Language | None = Field(
        description="the language of most of its chunks (None while empty); it chooses the default fusion")
    fusion: FusionOut = Field(description="how a search fuses BM25 and vectors unless the request says otherwise")


    access: Level | None = Field(None, description="what the caller may do with it: read (ask, search), write "
                                 "(upload, delete documents, edit the glossary) or manage (delete it, grant access)")


class KnowledgeBaseDetail(KnowledgeBaseOut):
    documents: int = Field(description="ready documents")
    chunks: int = Field(description="their indexed chunks")


class KnowledgeBaseList(BaseModel):
    kbs: list[KnowledgeBaseOut]


class DocumentOut(BaseModel):
    id: str = Field(description="the first 16 hex digits of the file's sha256")
    source: str
    sha256: str
    chunks: int = Field(description="indexed chunks")
    status: str = Field(description="ready, or pending while an ingest stores it")
    created: str
    chars: int | None = Field(None, description="characters of extracted text")
    language: str | None = None
    format: str | None = Field(None, description="the format it was read as (pdf, docx, pptx, xlsx, image, ...)")
    pages: int | None = Field(None, description="pages, slides or sheets, for formats that have them")
    ocr_pages: int | None = Field(None, description="how many pages were read by OCR (scans, photos)")


class DocumentsOut(BaseModel):
    documents: list[DocumentOut]


class JobOut(BaseModel):
    """An upload job, from the database: any replica answers, before and after a restart."""

    id: str
    kb: str
    kb_id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] = Field(
        description="cancelled: DELETE /v1/jobs/{id}, or its knowledge base was deleted (the reason is in error)")
    progress: float = Field(description="share of the files done, counting the embedded part of the file in hand, "
                            "0..1")
    files: list[JobFile]
    created: str
    finished: str | None = None
    error: str | None = None
    eta_s: float | None = Field(None, description="while running: seconds left, estimated from this worker's rate "
                                "so far (absent until its first embedded batch)")
    attempts: int = Field(description="workers that claimed the job (more than 1: a worker died and another "
                          "took over)")


class GlossaryEntryOut(BaseModel):
    id: str
    terms: list[str]


class GlossaryList(BaseModel):
    entries: list[GlossaryEntryOut]


class GlossaryAdd(_Strict):
    entries: list[str | list[str]] = Field(min_length=1, max_length=500, description="each entry as "
                                           "'SFT = 有监督微调 = supervised fine-tuning' or as a list of its terms")


class GlossarySuggestion(BaseModel):
    terms: list[str]
    count: int = Field(description="how often the KB writes the pair out")
    example: str


class GlossarySuggestions(BaseModel):
    suggestions: list[GlossarySuggestion]


class RenameSession(_Strict):
    title: str = Field(min_length=1, max_length=200)


class SessionSummary(BaseModel):
    id: str
    kb_id: str
    created: str
    active: str = Field(description="when its last message was written")
    title: str = Field(description="the given title, or the start of its first question")
    messages: int


class SessionList(BaseModel):
    sessions: list[SessionSummary]


class SessionMessage(BaseModel):
    """A question, or an answer with the evidence it was delivered with (as the chat returned it, without the
    trace). For a question, and an answer written before evidence was kept, the evidence fields are null."""

    role: Literal["user", "assistant"]
    content: str
    created: str
    citations: list[CitationOut] | None = None
    claims: list[ClaimOut] | None = None
    refused: bool | None = None
    grounded: bool | None = None
    related: list[PassageOut] | None = Field(None, description="when refused: the closest passages (at most 3)")
    policy: Policy | None = None
    usage: UsageOut | None = None


class SessionOut(BaseModel):
    id: str
    kb_id: str
    created: str
    title: str | None = Field(description="the title given by renaming it, if any")
    messages: list[SessionMessage]


# -- people, keys, grants, audit (README "Teams") ------------------------------------------------------------
class MeOut(BaseModel):
    user: str = Field(description="the key's owner; 'operator' for a key from RAG_API_KEY/RAG_API_KEYS_FILE or a "
                      "server without keys")
    role: Role
    key_id: str | None = Field(description="the public id of the key used (null for the operator)")
    admin: bool
    can_create_kbs: bool


class UserIn(_Strict):
    name: str = Field(min_length=1, max_length=MAX_USER_NAME)
    role: Role


class UserPatch(_Strict):
    role: Role | None = None
    disabled: bool | None = Field(None, description="a disabled user's keys stop working at their next request")


class UserOut(BaseModel):
    name: str
    role: Role
    disabled: bool
    created: str
    keys: int | None = Field(None, description="their keys that still work (not revoked, not expired)")


class UserList(BaseModel):
    users: list[UserOut]


class KeyIn(_Strict):
    user: str = Field(min_length=1, max_length=MAX_USER_NAME, description="the user the key acts as")
    expires_days: float | None = Field(None, gt=0, le=MAX_KEY_DAYS, description="days until it stops working "
                                       "(default: never)")


class KeyOut(BaseModel):
    id: str = Field(description="the key's public id (revoke it by this)")
    user: str
    prefix: str = Field(description="how the key begins, to recognise it: rag_<id>")
    created: str
    expires: str | None
    revoked: str | None
    last_used: str | None = Field(description="to the minute")


class KeyCreated(BaseModel):
    id: str
    key: str = Field(description="the key itself: shown only in this answer, stored only as a hash")
    user: str
    expires: str | None
    prefix: str
    created: str


class KeyList(BaseModel):
    keys: list[KeyOut]


class GrantIn(_Strict):
    user: str = Field(min_length=1, max_length=MAX_USER_NAME)
    level: Level = Field(description="read (ask, search), write (and upload, delete documents, edit the glossary) "
                         "or manage (and delete the KB, grant access); readers can only be granted read")


class GrantOut(BaseModel):
    kb: str
    user: str
    level: Level
    created: str


class GrantList(BaseModel):
    grants: list[GrantOut]


class AuditEventOut(BaseModel):
    id: str
    at: str
    actor: str = Field(description="a user, 'operator' (a key from the settings) or 'cli:<account>'")
    key_id: str | None
    action: str = Field(description="kb.create, kb.delete, document.upload, document.replace, document.delete, "
                        "glossary.add, glossary.remove, grant.add, grant.remove, key.create, key.revoke, user.add, "
                        "user.update")
    kb: str | None
    target: str | None = Field(description="what was acted on: a document, key, user or glossary entry id")
    detail: dict[str, Any]


class AuditList(BaseModel):
    events: list[AuditEventOut]


class ModelOut(BaseModel):
    id: str = Field(description="a knowledge base's name: the `model` of a chat completion")
    object: Literal["model"] = "model"
    created: int = Field(description="when the knowledge base was created (Unix time)")
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class Report(BaseModel):
    id: str = Field(description="where it lives: 'docs/<name>' (the project's) or 'dir/<name>' (RAG_REPORTS_DIR)")
    title: str
    formats: list[str]


class ReportList(BaseModel):
    reports: list[Report]


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class OpenAIChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(description="a knowledge base id or name")
    messages: list[OpenAIMessage] = Field(min_length=1)
    stream: bool = False

    def turns(self, max_history: int) -> tuple[str, tuple[tuple[str, str], ...]]:
        """The last user message (the question) and the user/assistant turns before it (the history), at most
        ``max_history`` messages before it: a long history is replayed into a session while the chat holds the
        LLM, so its size is bounded up front."""
        if len(self.messages) - 1 > max_history:
            raise InvalidInputError(f"{len(self.messages)} messages: at most {max_history} may come before the "
                                    "question (RAG_MAX_HISTORY_MESSAGES)")
        turns = [(m.role, m.text()) for m in self.messages if m.role in ("user", "assistant") and m.text().strip()]
        if not turns or turns[-1][0] != "user":
            raise InvalidInputError("the last message must be a non-empty user message")
        question = turns[-1][1]
        if len(question) > MAX_QUESTION:
            raise InvalidInputError(f"the question is longer than {MAX_QUESTION} characters")
        return question, tuple(turns[:-1])


# -- response shapes (documentation: the routes return Answer.to_json()) ----------------------------------
class CitationOut(BaseModel):
    n: int = Field(description="the marker number in the answer")
    chunk_id: str
    doc_id: str
    source: str
    text: str
    page: int | None = Field(None, description="the page the text starts on (PDF page, slide, sheet)")
    headings: list[str] | None = Field(None, description="the heading or question path of the text's section "
                                       "(structure and markdown splitters)")
    ocr: bool | None = Field(None, description="true when the page's text was read by OCR (a scan or a photo)")


class PassageOut(BaseModel):
    chunk_id: str
    doc_id: str
    source: str
    text: str
    score: float
    page: int | None = None
    headings: list[str] | None = Field(None, description="the heading or question path of the text's section")
    ocr: bool | None = Field(None, description="true when the page's text was read by OCR (a scan or a photo)")


class SearchHitOut(PassageOut):
    explain: dict[str, Any] | None = Field(None, description="with explain: each retriever's rank and score "
                                           "(bm25, vector, feedback, ...), fused_score, matched_terms, rerank and "
                                           "matched_chunk_id when they apply")


class ExpansionOut(BaseModel):
    matched: str = Field(description="the glossary term the query named")
    added: list[str] = Field(description="the entry's other terms BM25 also looked for")


class FusionUsedOut(FusionOut):
    kb_language: Language | None = Field(description="the KB language that chose the default fusion")


class SearchOut(BaseModel):
    """``rag search --json``; the explain-only keys are absent without explain."""

    hits: list[SearchHitOut]
    queries: list[str] | None = Field(None, description="with explain: the query, then any paraphrases searched")
    expansions: list[ExpansionOut] | None = Field(None, description="with explain: glossary expansions")
    fusion: FusionUsedOut | None = Field(None, description="with explain: the fusion used")
    hypothetical: str | None = Field(None, description="with explain and a HyDE search: the passage written")
    pseudo_feedback: list[str] | None = Field(None, description="with explain: the chunk ids the vector query was "
                                              "moved towards (empty when no pseudo-relevance feedback acted)")
    pseudo_feedback_coherence: float | None = Field(None, description="with explain: how close the first results "
                                                    "were to each other, when feedback was considered")


class ClaimOut(BaseModel):
    text: str = Field(description="one delivered sentence, without markers")
    citations: list[int]
    supported: bool = Field(description="the cited passage states it (always true under policy 'strict')")
    reason: str | None = Field(None, description="why not supported: no-content, no-answer, uncited, "
                               "off-question or not-stated (README, 'How a question is answered')")
    evidence: str | None = Field(None, description="the cited passage's sentence that states it best")


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class AnswerOut(BaseModel):
    answer: str = Field(description="the checked answer, or the refusal sentence in the question's language")
    citations: list[CitationOut]
    refused: bool
    grounded: bool
    usage: UsageOut
    related: list[PassageOut] = Field(description="when refused: the closest passages (at most 3)")
    claims: list[ClaimOut]
    policy: Policy
    session_id: str | None = None


class CompletionMessageOut(BaseModel):
    role: Literal["assistant"]
    content: str


class CompletionChoiceOut(BaseModel):
    index: int
    message: CompletionMessageOut
    finish_reason: str


class CompletionUsageOut(UsageOut):
    total_tokens: int


class ChatCompletionOut(BaseModel):
    """OpenAI's chat.completion, with this service's extensions beside the standard fields."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[CompletionChoiceOut]
    usage: CompletionUsageOut
    citations: list[CitationOut]
    refused: bool
    related: list[PassageOut]
    claims: list[ClaimOut]


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings body; options it has that do not apply here (``user``) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(description="a knowledge base (its embedder), or 'e5', 'minilm' or 'default'")
    input: str | list[Any] = Field(description="a text or a list of texts (token arrays are not accepted)")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="only the model's own dimension")
    input_type: Literal["query", "passage"] = Field(
        "query", description="an extension: 'passage' embeds texts as e5 embeds the passages of a KB; 'query' (the "
        "default, also e5's advice for symmetric tasks) as it embeds a question")

    def texts(self) -> list[str]:
        if isinstance(self.input, str):
            return [self.input]
        if not all(isinstance(item, str) for item in self.input):
            raise InvalidInputError("input must be a text or a list of texts: token arrays are not supported")
        return list(self.input)


class EmbeddingOut(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="numbers, or their float32 bytes in base64")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"]
    model: str
    data: list[EmbeddingOut]
    usage: EmbeddingUsage
