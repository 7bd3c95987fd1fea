from pathlib import Path

from rag_service.text.tokenize import Tokenizer, has_cjk, tokenize


def test_chinese_uses_jieba_search_mode_without_stop_words() -> None:
    tokens = tokenize("星河社区图书馆的借阅规则")
    assert "图书馆" in tokens
    assert "图书" in tokens  # search mode also emits the shorter words inside long ones
    assert "借阅" in tokens
    assert "的" not in tokens


def test_latin_is_lower_cased_stemmed_and_stop_words_dropped() -> None:
    assert tokenize("Hello, World! The libraries are borrowing BM25 books.") == [
        "hello", "world", "librari", "borrow", "bm25", "book"]


def test_mixed_script_is_split_by_script() -> None:
    tokens = tokenize("RAG系统uses BM25检索")
    assert tokens[0] == "rag"
    assert "系统" in tokens and "use" in tokens and "bm25" in tokens and "检索" in tokens


def test_user_dictionary_changes_segmentation_and_version(tmp_path: Path) -> None:
    text = "星河智检系统上线"
    assert "星河智检" not in tokenize(text)
    user_dict = tmp_path / "dict.txt"
    user_dict.write_text("星河智检 10 n\n", encoding="utf-8")
    custom = Tokenizer(user_dict)
    assert "星河智检" in custom(text)
    assert custom.version != Tokenizer().version


def test_has_cjk() -> None:
    assert has_cjk("借几本书?")
    assert not has_cjk("How many books?")


def test_chinese_numerals_read_as_digits() -> None:
    from rag_service.text.tokenize import arabic_numerals

    cases = {"八本书": "8本书", "十二位": "12位", "二十一天": "21天", "二〇一五年": "2015年", "二百零五度": "205度",
             "零点五元": "0.5元", "三万五千人": "35000人", "12位": "12位"}
    assert {text: arabic_numerals(text) for text in cases} == cases


def test_chinese_quantities_get_their_digits_for_a_reader_of_another_language() -> None:
    from rag_service.text.tokenize import digits_beside_numerals

    assert (
        digits_beside_numerals("年卡：每张两千六百八十元，有效期六个月")
        == "年卡：每张两千六百八十（2680）元，有效期六（6）个月"
    )
    assert digits_beside_numerals("周二至周日开放，一卡通在第一个窗口办") == "周二至周日开放，一卡通在第一个窗口办"
