from rag_service.tokenize import has_cjk, tokenize


def test_chinese_uses_jieba_search_mode() -> None:
    tokens = tokenize("星河社区图书馆每人最多可以借阅八本书")
    assert "图书馆" in tokens
    assert "图书" in tokens  # search mode also emits the shorter words inside long ones
    assert "借阅" in tokens


def test_latin_is_lower_cased_words_without_punctuation() -> None:
    assert tokenize("Hello, World! BM25 rocks.") == ["hello", "world", "bm25", "rocks"]


def test_mixed_script_is_split_by_script() -> None:
    tokens = tokenize("RAG系统uses BM25检索")
    assert tokens[0] == "rag"
    assert "系统" in tokens and "uses" in tokens and "bm25" in tokens and "检索" in tokens


def test_has_cjk() -> None:
    assert has_cjk("借几本书?")
    assert not has_cjk("How many books?")
