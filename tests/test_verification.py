"""Claim verification without the model: content beyond the question, anchoring of a claim in the sentence
that states it, policies applied to verdicts, and passages completed from their neighbours."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest

from rag_service.answering.calibration import calibration_for
from rag_service.answering.citations import validate
from rag_service.answering.passages import complete_lists, is_question_list, with_neighbours
from rag_service.answering.verification import (
    Calibration,
    Signals,
    TrustModel,
    Unit,
    Verification,
    Verifier,
    anchoring,
    asks_for_number,
    constraints_met,
    content_words,
    quote_share,
    quote_text,
)
from rag_service.records import Chunk, Citation, Claim
from rag_service.settings import Settings
from rag_service.text.textunits import evidence_units


@pytest.mark.parametrize(("sentence", "question", "has_content"), [
    ("X 有一些缺点。", "X 有什么缺点？", False),
    ("The X2 has some drawbacks.", "What drawbacks does the X2 have?", False),
    ("There are several reasons for this.", "What are the reasons for this?", False),
    ("At the end of a tour, five teas are tasted.", "How many teas are tasted at the end of a tour?", True),
    ("星河社区图书馆每人最多可以同时借阅八本书。", "星河社区图书馆每人最多可以同时借阅几本书？", True),
    ("No, pets are not allowed in the hold.", "Are pets allowed in the hold?", True),
    ("RLHF 之后模型更啰嗦，是因为奖励模型偏好长回答。", "为什么 RLHF 之后模型更啰嗦？", True),
])
def test_content_beyond_the_question(sentence: str, question: str, has_content: bool) -> None:
    assert bool(content_words(sentence, question)) is has_content


def test_anchoring_prefers_the_sentence_that_speaks_of_what_was_asked() -> None:
    passage = ("The 2019 Harbour Cup drew 40 teams. Lena Brandt, who played for the Gulls, scored twice in the "
               "group stage. The final was won by the Otters, captained by Mara Quist.")
    question = "Who captained the team that won the 2019 Harbour Cup final?"
    right, sentence = anchoring(question, "The winning team was captained by Mara Quist.", passage)
    wrong, _ = anchoring(question, "The winning team was captained by Lena Brandt.", passage)
    assert right > wrong and sentence == "The final was won by the Otters, captained by Mara Quist."
    assert anchoring(question, "It was captained by Tom Diaz.", passage) == (0.0, "")  # not in the passage


def _chunk(n: int, text: str, start: int = 0) -> Chunk:
    return Chunk(id=f"d:{n}", doc_id="d", source="faq.txt", text=text, position=n, start=start,
                 end=start + len(text))


def _verification(claims: list[Claim], rendered: list[str]) -> Verification:
    chunk = _chunk(0, "passage")
    return Verification(claims, rendered, {1: Citation(1, chunk), 2: Citation(2, chunk)})


def test_policies_remove_mark_or_keep_unsupported_sentences() -> None:
    claims = [Claim("The fee is 45 euros.", [1], True, anchoring=0.9),
              Claim("It is paid in cash.", [2], False, "not-stated", anchoring=0.1)]
    v = _verification(claims, ["The fee is 45 euros [1]. ", "It is paid in cash [2]."])
    text, citations, refused, kept = v.apply("strict")
    assert (text, [c.n for c in citations], refused) == ("The fee is 45 euros [1].", [1], False)
    assert kept == claims[:1]
    text, citations, refused, kept = v.apply("lenient")
    assert text == "The fee is 45 euros [1]. It is paid in cash [2]." and not refused
    assert [c.supported for c in kept] == [True, False]
    assert v.apply("off")[0] == text


def test_an_answer_with_nothing_supported_is_a_refusal_unless_policy_is_off() -> None:
    claims = [Claim("X has some drawbacks.", [1], False, "no-content")]
    v = _verification(claims, ["X has some drawbacks [1]."])
    assert v.apply("strict")[2] and v.apply("lenient")[2]
    assert v.apply("off")[:3] == ("X has some drawbacks [1].", [v.citations[1]], False)
    refused_by_model = Verification([], [], {}, model_refused=True)
    assert all(refused_by_model.apply(p)[2] for p in ("strict", "lenient", "off"))


def test_a_lead_in_line_stands_or_falls_with_its_items() -> None:
    lead = Claim("The box holds:", [], False, lead_in=True)
    items = [Claim("- a charger", [1], True), Claim("- a unicorn", [1], False, "not-stated")]
    v = _verification([lead, *items], ["The box holds:\n", "- a charger [1]\n", "- a unicorn [1]"])
    assert v.apply("strict")[0] == "The box holds:\n- a charger [1]"
    v = _verification([lead, items[1]], ["The box holds:\n", "- a unicorn [1]"])
    assert v.apply("strict")[2]


def test_policy_off_checks_markers_only() -> None:
    packed = [_chunk(0, "A full charge of the X2 battery takes about two hours.")]
    v = Verifier(check=False).verify("How long does the X2 take to charge?", "It takes about two hours [1].",
                                     packed, model_refused=False)
    assert [(c.supported, c.anchoring, c.citations) for c in v.claims] == [(True, None, [1])]
    assert v.trust is None


def test_checked_claims_need_the_questions_numbers_and_a_number_when_one_is_asked() -> None:
    packed = [_chunk(0, "In 2021 the library lent 8,200 books. It opens at 9:00 on weekdays.")]
    verifier = Verifier()
    v = verifier.verify("How many books did the library lend in 2022?", "It lent 8,200 books [1].", packed,
                        model_refused=False)
    assert [(c.supported, c.reason) for c in v.claims] == [(False, "off-question")]
    v = verifier.verify("How many books did the library lend in 2021?", "It lent many books [1].", packed,
                        model_refused=False)
    assert [(c.supported, c.reason) for c in v.claims] == [(False, "no-answer")]
    v = verifier.verify("How many books did the library lend in 2021?", "It lent 8,200 books [1].", packed,
                        model_refused=False)
    assert v.claims[0].supported and v.claims[0].anchoring and v.claims[0].evidence


def test_question_lists_are_recognised() -> None:
    toc = "Contents\n1. How much is a plot?\n2. How long is the waiting list?\n3. Can I keep bees?\n4. Who mows?"
    assert is_question_list(toc)
    thread = "Q: Is the shed open?\nReply: yes, 9 to 5.\nQ: Can I park?\nReply: by the gate.\nQ: Bees?\nReply: no."
    assert not is_question_list(thread)
    assert not is_question_list("What is allowed?\n- compost\n- rainwater butts\n- cold frames")


def test_a_list_gets_its_question_line_and_its_remaining_items_from_the_neighbours() -> None:
    doc = ("💡 Why do models ramble after RLHF?\nCommon causes:\n"
           "- the reward model prefers long answers\n- annotators reward detail\n"
           "- the KL penalty is too small\n- no length penalty\nNext question?\nAnother answer.")
    cuts = [0, doc.index("- the reward"), doc.index("- the KL"), doc.index("Next question")]
    chunks = [_chunk(i, doc[a:b], a) for i, (a, b) in enumerate(zip(cuts, [*cuts[1:], len(doc)], strict=True))]
    middle = with_neighbours(chunks[1], chunks[0], chunks[2])
    assert middle.text.startswith("Common causes:\n- the reward") and middle.text.endswith("- no length penalty")
    assert middle.metadata["context"] == ["d:0", "d:2"] and middle.id == "d:1"
    # A paragraph, not a list: left alone.
    prose = [_chunk(0, "Intro line:\nSome prose here."), _chunk(1, "More prose follows.", 27)]
    assert with_neighbours(prose[1], prose[0], None) is prose[1]


def test_a_list_answer_cut_after_its_first_item_gets_the_whole_list() -> None:
    shed = ("13. Which tools can I borrow?\nThe communal tool shed has:\n   - 4 wheelbarrows\n"
            "   - spades, forks and rakes\n   - a petrol strimmer\n   - a rotavator\nReturn everything clean.")
    packed = [_chunk(0, shed)]
    full = complete_lists("4 wheelbarrows [1]", packed)
    assert full.splitlines() == ["The communal tool shed has:", "- 4 wheelbarrows [1]",
                                 "- spades, forks and rakes [1]", "- a petrol strimmer [1]", "- a rotavator [1]"]
    assert complete_lists("The shed lends:\n- 4 wheelbarrows [1]\n- a rotavator [1]", packed).count("[1]") == 4
    # A sentence that says something of its own about one item is not a partial list.
    assert complete_lists("The rotavator must be booked on the sheet [1].", packed).count("[1]") == 1
    assert complete_lists("I cannot find the answer in the provided documents.", packed).count("[") == 0
    zh = [_chunk(0, "可以借哪些工具？\n工具房可以借用：\n- 手推车\n- 汽油割草机\n- 旋耕机（需登记）\n")]
    expected = "工具房可以借用：\n- 手推车[1]\n- 汽油割草机[1]\n- 旋耕机（需登记）[1]"
    assert complete_lists("工具房可以借用手推车[1]。", zh) == expected


def test_the_evidence_check_gets_the_sentence_and_the_passage_it_comes_from() -> None:
    """The best-anchored sentence of the cited passage goes to the check with its passage number, so the
    check can show where it stands (file name, the passage's first line); the trust score follows it."""
    packed = [_chunk(0, "Opening hours. The library opens at 9:00 on weekdays."),
              _chunk(1, "Lending. Members may borrow eight books at a time for thirty days.")]
    asked: list[tuple[str, int]] = []

    def check(answer: float) -> Callable[[str, int], float]:
        def evidence_check(sentence: str, n: int) -> float:
            asked.append((sentence, n))
            return answer
        return evidence_check

    question = "How many books may a member borrow at a time?"
    draft = "A member may borrow eight books at a time [2]."
    fit = calibration_for(Settings(llm="qwen2.5-coder-1.5b"))
    verifier = Verifier(fit, evidence_check=check(0.95))
    high = verifier.verify(question, draft, packed, model_refused=False, signals=Signals(gate=0.9))
    assert asked == [("Members may borrow eight books at a time for thirty days.", 2)]
    assert high.claims[0].evidence_passage == 2 and high.signals.evidence == 0.95 and high.trust_met
    low = Verifier(fit, evidence_check=check(0.01)).verify(
        question, draft, packed, model_refused=False, signals=Signals(gate=0.9))
    assert low.trust is not None and high.trust is not None and low.trust < high.trust


def test_evidence_units_read_a_list_item_under_its_question_and_the_list_whole() -> None:
    text = "Which tools split sentences?\n- NLTK punkt\n- spaCy\nBoth run offline. They are free."
    assert evidence_units(text) == ["Which tools split sentences?", "Which tools split sentences?\n- NLTK punkt",
                                    "Which tools split sentences?\n- spaCy",
                                    "Which tools split sentences?\n- NLTK punkt\n- spaCy",
                                    "Both run offline.", "They are free."]


def test_a_list_item_is_anchored_by_the_question_line_above_it() -> None:
    """'- spaCy' shares no word with 'Which tools can split sentences?'; under its question line it speaks of what
    was asked, and the whole list is the evidence a list answer is judged by."""
    passage = "Which tools split sentences?\n- NLTK punkt\n- spaCy\nTokenisers are another topic."
    value, unit = anchoring("Which tools can I use to split sentences?", "- spaCy", passage)
    assert value > 0.5 and unit == "Which tools split sentences?\n- NLTK punkt\n- spaCy"
    # The section's heading path frames every unit of the passage.
    framed, _ = anchoring("How long is the warranty?", "It lasts 2 years.", "It lasts 2 years.", frame="Warranty")
    assert framed > anchoring("How long is the warranty?", "It lasts 2 years.", "It lasts 2 years.")[0]


def test_quote_share_measures_what_is_copied_verbatim() -> None:
    passage = "持有读者证的居民每人最多可以同时借阅八本书，借期为二十一天。"
    assert quote_share("每人最多可以同时借阅八本书[1]。", passage) == 1.0
    assert quote_share("A reader can borrow eight books at once [1].", passage) == 0.0
    assert 0.3 < quote_share("读者最多可以同时借阅八本书，借期一个月。", passage) < 0.9
    assert quote_share("- Hoses may be used only between 18:00 and 09:00 [2]",
                       "Rules:\n- Hoses may be used only between 18:00 and 09:00.\n- No sprinklers.") == 1.0


def _quoted_verification(p: float) -> Verification:
    passage = _chunk(0, "Which tools split sentences?\n- NLTK punkt\n- spaCy")
    claims = [Claim("- NLTK punkt", [1], True, anchoring=0.9, evidence="Which tools split sentences?\n- NLTK punkt\n"
                    "- spaCy", evidence_passage=1, quote=1.0, evidence_p=p),
              Claim("- TextBlob", [1], True, anchoring=0.2, quote=0.2, evidence_p=None)]
    return Verification(claims, ["- NLTK punkt [1]\n", "- TextBlob [1]"], {1: Citation(1, passage)},
                        signals=Signals(gate=0.9),
                        units=[Unit("Which tools split sentences?\n- NLTK punkt\n- spaCy", 1, p)])


def test_below_the_trust_threshold_quotes_the_model_vouches_for_stay_and_others_go() -> None:
    strict = TrustModel(-10.0, {}, 0.5, quote_min_evidence=0.7)  # the score alone would refuse everything
    v = _quoted_verification(0.8)
    v.decide(strict)
    assert not v.trust_met and v.delivered_by == "quote"
    assert [(c.supported, c.reason) for c in v.claims] == [(True, None), (False, "not-stated")]
    assert v.apply("strict")[:3] == ("- NLTK punkt [1]", [v.citations[1]], False)
    weak = _quoted_verification(0.6)
    weak.decide(strict)
    assert weak.apply("strict")[2] and weak.delivered_by is None  # the model did not vouch for its evidence
    weak.decide(TrustModel(-10.0, {}, 0.5))  # judged again with another fit: nothing is remembered
    assert weak.apply("strict")[2]
    weak.decide(TrustModel(10.0, {}, 0.5))
    assert weak.trust_met and weak.apply("strict")[0] == "- NLTK punkt [1]\n- TextBlob [1]"


def test_an_answer_with_nothing_left_gets_the_document_s_own_words() -> None:
    v = _quoted_verification(0.9)
    v.claims = [replace(c, quote=0.1) for c in v.claims]  # a paraphrase: not a quote
    v.decide(TrustModel(-10.0, {}, 0.5, extract_min_evidence=0.85))
    text, citations, refused, claims = v.apply("strict")
    assert not refused and v.delivered_by == "extract" and [c.n for c in citations] == [1]
    assert text == "- NLTK punkt [1]\n- spaCy [1]"  # the question line the list answers is left out
    assert claims[0].how == "extract" and claims[0].supported
    v.decide(TrustModel(-10.0, {}, 0.5, extract_min_evidence=0.95))
    assert v.apply("strict")[2]
    assert quote_text("The fee is 45 euros.", 2) == "The fee is 45 euros [2]."
    assert quote_text("工具房可以借用：\n- 手推车\n- 旋耕机", 1) == "工具房可以借用：\n- 手推车[1]\n- 旋耕机[1]"


def test_a_verification_in_a_trace_can_be_judged_again() -> None:
    v = _quoted_verification(0.8)
    v.decide(TrustModel(-10.0, {}, 0.5, quote_min_evidence=0.7))
    again = Verification.from_json(json.loads(json.dumps(v.to_json())), v.citations)
    assert again.claims == v.claims and again.units == v.units and again.delivered_by == "quote"
    again.decide(TrustModel(10.0, {}, 0.5))
    assert again.delivered_by == "trust"


def test_which_ways_is_not_how_many_and_a_range_covers_a_number() -> None:
    assert not asks_for_number("一卡通丢了，可以通过哪几种方式挂失？") and asks_for_number("年假有几天？")
    rules = "Power banks: up to 100 Wh allowed; 100–160 Wh only with approval."
    assert constraints_met("Can I bring a 130 Wh power bank?", rules)
    assert not constraints_met("Can I bring a 170 Wh power bank?", rules)


def test_a_sentence_in_another_language_is_matched_to_its_passage_by_meaning() -> None:
    """No word is shared between 'Readers may borrow eight books' and '每人最多可以同时借阅八本书': an aligner (the
    KB's multilingual embedder) matches them; without one the sentence has no passage."""
    packed = [_chunk(0, "开放时间：周二至周日九点到晚上八点。"),
              _chunk(1, "持有读者证的居民每人最多可以同时借阅八本书。")]

    def align(text: str, others: Sequence[str]) -> list[float]:  # a stand-in for e5: books match books
        return [0.9 if "借阅" in o and "books" in text else 0.7 for o in others]

    sentence = "Readers may borrow up to eight books at a time [2]."
    _, citations, checks = validate(sentence, packed, "How many books can I borrow?", align=align)
    assert [c.n for c in citations] == [2] and checks[0].aligned == [2] and checks[0].how == "model"
    assert validate(sentence, packed, "How many books can I borrow?")[2][0].how == "unsupported"
    v = Verifier(align=align).verify("How many books can I borrow?", sentence, packed, model_refused=False)
    assert v.claims[0].aligned and v.claims[0].evidence == "持有读者证的居民每人最多可以同时借阅八本书。"


def test_a_draft_that_says_nothing_still_gets_the_passage_s_words_when_they_answer() -> None:
    """'GQA makes decoding faster' restates the question (no-content): the passage units that speak most of the
    question are put to the evidence check, and the one the model vouches for becomes the answer; a model that
    refused gets the same chance when its gate said the passages state the answer."""
    packed = [_chunk(0, "Why is grouped-query attention faster?\nQuery heads share key and value heads, so the KV "
                        "cache is smaller and decoding reads less memory. It was introduced in 2023.")]
    asked: list[str] = []

    def evidence_check(unit: str, n: int) -> float:
        asked.append(unit)
        return 0.9 if "KV cache" in unit else 0.2

    question = "Why does grouped-query attention make decoding faster?"
    fit = TrustModel(0.0, {"gate": 1.0}, 0.5, extract_min_evidence=0.8)
    verifier = Verifier(Calibration("test", {"en": fit}), evidence_check=evidence_check)
    v = verifier.verify(question, "Grouped-query attention makes decoding faster [1].", packed, model_refused=False,
                        signals=Signals(gate=0.9))
    assert v.claims[0].reason == "no-content" and asked[0].startswith("Query heads")
    assert not any(unit.endswith("?") for unit in asked)  # the passage's own question line answers nothing
    text, _, refused, _ = v.apply("strict")
    assert not refused and v.delivered_by == "extract" and "KV cache is smaller" in text and text.endswith("[1].")
    refused_draft = verifier.verify(question, "I cannot find the answer.", packed, model_refused=True,
                                    signals=Signals(gate=0.9))
    assert refused_draft.apply("strict")[0] == text and refused_draft.apply("off")[2]
    low_gate = verifier.verify(question, "I cannot find the answer.", packed, model_refused=True,
                               signals=Signals(gate=0.2))
    assert low_gate.apply("strict")[2] and not low_gate.units  # the model said no twice: nothing more is asked


def test_a_question_copied_from_the_passage_is_no_answer_and_no_extract() -> None:
    """A scraped FAQ's question line ('Advertisement > 11. How do I join?') states nothing: as the whole draft it is
    no-content, it is never the extract; above a list it introduces, it stands with the items."""
    packed = [_chunk(0, "11. How do I join the committee?\nWrite to the committee secretary before spring.")]
    asked: list[str] = []

    def evidence_check(unit: str, n: int) -> float:
        asked.append(unit)
        return 0.95

    question = "How do I join the garden committee?"
    verifier = Verifier(Calibration("test", {"en": TrustModel(0.0, {"gate": 1.0}, 0.5, extract_min_evidence=0.8)}),
                        evidence_check=evidence_check)
    v = verifier.verify(question, "Garden > 11. How do I join the committee? [1]", packed, model_refused=False,
                        signals=Signals(gate=0.9))
    assert v.claims[0].reason == "no-content"
    assert all("?" not in unit for unit in asked) and any("secretary" in unit for unit in asked)
    assert v.apply("strict")[0].startswith("Write to the committee secretary")
    listed = verifier.verify("What should I bring?", "What should I bring? [1]\n- a pen [1]\n- a hat [1]",
                             [_chunk(0, "What should I bring?\n- a pen\n- a hat")], model_refused=False,
                             signals=Signals(gate=0.9))
    assert listed.claims[0].lead_in and [c.supported for c in listed.claims[1:]] == [True, True]
    assert listed.apply("strict")[0].endswith("- a pen [1]\n- a hat [1]")  # delivered under its question line
