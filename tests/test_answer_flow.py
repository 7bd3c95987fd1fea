"""The answer flow with a scripted generator (tests/fakes.py): every grounding policy, every way to a refusal,
streaming, citation markers and which checks the model is asked, in order, with which prompts.

Everything but the generator is real: a tiny KB ingested with the bundled e5 embedder into embedded Chroma and
SQLite, real retrieval, packing, templates, verification and trust scoring. What the real model says is tested in
the ``llm`` tier; here the test decides what it says, so the code's handling of each case is pinned exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rag_service import prompts
from rag_service.answering.calibration import calibration_for
from rag_service.answering.generation import Answerer
from rag_service.answering.verification import NO_FIT_WARNING, Calibration, Signals, TrustModel, trust_features
from rag_service.ingestion.pipeline import Ingestor
from rag_service.records import Answer
from rag_service.settings import Settings
from rag_service.workspace import Workspace
from tests.fakes import ScriptedLLM, Unscripted

DOCS = {
    "travel.txt": "Aurora Robotics travel policy\n\nThe daily meal allowance on business trips is 45 euros. "
                  "Taxi rides are reimbursed only between 22:00 and 06:00.\n",
    "library.txt": "星河社区图书馆借阅规则\n\n每位读者最多可以同时借阅八本书。借期为三十天。\n",
    "tools.txt": "Harbour Allotments tool shed\n\nThe tool shed lends members these tools:\n- wheelbarrows\n"
                 "- a petrol strimmer\n- a rotavator, booked on the sheet in the pavilion\n",
    "tea.txt": "Greenleaf Tea Farm history\n\nGreenleaf Tea Farm was founded by Mara Okafor in 1987. "
               "Tours of the tea farm run on Saturdays.\n",
}
MEAL = "What is the daily meal allowance on business trips?"
MEAL_ANSWER = "The daily meal allowance on business trips is 45 euros [1]."
PARKING = "Members also get a free parking permit for the harbour car park [1]."
REFUSAL = "I cannot find the answer in the provided documents."
# A fit whose score is the product of the gate's and the evidence check's odds, so each case's trust is known in
# closed form: gate 0.9 and evidence 0.7 give odds 9 * 7/3 = 21, trust 21/22.
FIT = Calibration("test fit", {lang: TrustModel(0.0, {"gate": 1.0, "evidence": 1.0}, 0.5, quote_min_evidence=0.8,
                                                extract_min_evidence=0.9) for lang in ("en", "zh")})
CONFIDENT = {"gate": 0.9, "passage_gate": 0.8, "evidence": 0.7}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four tiny documents in KB 'flow', ingested once in this process (the same code `rag ingest` runs)."""
    root = tmp_path_factory.mktemp("flow")
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    ws = Workspace(Settings(data_dir=root / "data"))
    try:
        ingestor, _ = Ingestor.open(ws, "flow")
        assert [r.status for r in ingestor.run([docs])] == ["added"] * len(DOCS)
    finally:
        ws.close()
    return root / "data"


Make = Callable[..., Answerer]


@pytest.fixture
def make(data_dir: Path) -> Iterator[Make]:
    """``make(llm, **settings)``: an Answerer over KB 'flow' with ``llm`` as its generator and the test fit. Its
    retriever translates with the same generator, so no test here can load the real model, and a translation it did
    not script fails it."""
    workspaces: list[Workspace] = []

    def build(llm: ScriptedLLM, calibration: Calibration | None = FIT, **settings: Any) -> Answerer:
        given: dict[str, Any] = {"translate_query": False, **settings}
        ws = Workspace(Settings(data_dir=data_dir, **given))
        workspaces.append(ws)
        return Answerer(ws, ws.catalog.get_kb("flow"), llm, calibration=calibration)

    yield build
    for ws in workspaces:
        ws.close()


def odds(p: float) -> float:
    return p / (1 - p)


def trust_of(gate: float, evidence: float) -> float:
    """What FIT scores: the logistic of the summed log-odds."""
    both = odds(gate) * odds(evidence)
    return both / (1 + both)


def user_message(name: str, **values: str) -> str:
    return prompts.load(name).messages(**values)[-1]["content"]


# -- the checks, in order ----------------------------------------------------------------------------
def test_a_supported_answer_asks_the_checks_in_order_and_is_delivered_with_its_citation(make: Make) -> None:
    llm = ScriptedLLM(answers=[MEAL_ANSWER], yes=CONFIDENT, refusal_start=0.05)
    answerer = make(llm)
    answer = answerer.ask(MEAL)

    assert llm.kinds() == ["gate", "answer", "passage_gate", "evidence"]
    gate, generation, passage_gate, evidence = llm.calls
    # The gate and the passage gate extend the answer prompt (llama.cpp reuses its KV cache); only checks after
    # the answer may yield threads to ingestion.
    assert gate.messages[:-1] == generation.messages and gate.text == user_message("gate.en")
    assert passage_gate.messages[:-1] == generation.messages
    assert passage_gate.text == user_message("gate_passage.en", n="1")
    assert (gate.after_answer, passage_gate.after_answer, evidence.after_answer) == (False, True, True)
    # The answer prompt: the passage under its number and file name, the question last; the refusal watched.
    assert "[1] (travel.txt) Aurora Robotics travel policy" in generation.text
    assert generation.text.endswith(f"Question: {MEAL}") and generation.watch == (REFUSAL,)
    settings = answerer.ws.settings
    assert (generation.max_tokens, generation.temperature) == (settings.llm_max_tokens, settings.llm_temperature)
    # The evidence check reads the one sentence that states the answer, where it stands, and the question.
    assert evidence.messages[0]["role"] == "system" and len(evidence.messages) == 2
    assert evidence.text == user_message(
        "check_evidence.en", source="travel.txt", opening="Aurora Robotics travel policy",
        sentence="The daily meal allowance on business trips is 45 euros.", question=MEAL)

    assert not answer.refused and answer.answer == MEAL_ANSWER and answer.grounded
    assert [(c.n, c.chunk.source) for c in answer.citations] == [(1, "docs/travel.txt")]
    assert [(c.supported, c.citations, c.evidence_p) for c in answer.claims] == [(True, [1], 0.7)]
    verification = answer.trace["verification"]
    assert verification["signals"] == {"gate": 0.9, "refusal_start": 0.05, "passage_gate": 0.8, "evidence": 0.7}
    assert verification["trust"] == pytest.approx(trust_of(0.9, 0.7)) and verification["delivered_by"] == "trust"
    assert verification["calibration"] == "test fit" and "warnings" not in answer.trace
    prompt_tokens = sum(llm.count_tokens(m["content"]) for m in generation.messages)
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (prompt_tokens, len(MEAL_ANSWER.split()))
    history = answerer.ws.sessions.history(answer.session_id or "")
    assert [(m["role"], m["content"]) for m in history] == [("user", MEAL), ("assistant", MEAL_ANSWER)]


def test_a_chinese_question_is_checked_with_the_chinese_prompts_and_its_marker_goes_before_the_full_stop(
        make: Make) -> None:
    question = "星河社区图书馆每位读者最多可以借几本书？"
    llm = ScriptedLLM(answers=["每位读者最多可以同时借阅八本书。[1]"], yes=CONFIDENT)
    answer = make(llm).ask(question)
    assert llm.kinds() == ["gate", "answer", "passage_gate", "evidence"]
    assert llm.calls[0].text == user_message("gate.zh") and llm.calls[2].text == user_message("gate_passage.zh", n="1")
    assert llm.calls[1].messages[0] == prompts.load("answer.zh").messages(passages="", question="")[0]
    assert llm.calls[1].watch == (prompts.load("refusal.zh").text(),)
    assert answer.answer == "每位读者最多可以同时借阅八本书[1]。" and answer.trace["language"] == "zh"
    assert [c.chunk.source for c in answer.citations] == ["docs/library.txt"]


# -- grounding policies ----------------------------------------------------------------------------------
def test_strict_removes_an_unsupported_sentence_lenient_keeps_it_marked_off_skips_the_checks(make: Make) -> None:
    draft = f"{MEAL_ANSWER}\n{PARKING}"
    answers: dict[str, Answer] = {}
    calls = {}
    for policy in ("strict", "lenient", "off"):
        llm = ScriptedLLM(answers=[draft], yes=CONFIDENT)
        answers[policy] = make(llm, grounding=policy).ask(MEAL)
        calls[policy] = llm.kinds()

    strict, lenient, off = answers["strict"], answers["lenient"], answers["off"]
    assert calls == {"strict": ["gate", "answer", "passage_gate", "evidence"],
                     "lenient": ["gate", "answer", "passage_gate", "evidence"], "off": ["answer"]}
    assert strict.answer == MEAL_ANSWER and [c.supported for c in strict.claims] == [True]
    # Lenient delivers the unsupported sentence too, without the marker no passage backs, as a claim marked false.
    parking = PARKING.replace(" [1]", "")
    assert lenient.answer == f"{MEAL_ANSWER}\n{parking}"
    assert [(c.supported, c.reason) for c in lenient.claims] == [(True, None), (False, "uncited")]
    # Off: the draft as written (markers still validated), no model check, no trust score.
    assert off.answer == f"{MEAL_ANSWER}\n{parking}" and off.policy == "off"
    assert off.trace["verification"]["trust"] is None and off.trace["verification"]["signals"]["gate"] is None
    assert all(c.anchoring is None for c in off.claims)
    for policy, answer in answers.items():
        assert not answer.refused and answer.policy == policy and [c.n for c in answer.citations] == [1]
        assert answer.trace["raw_completion"] == draft
    # One run's trace shows what every policy would have delivered: the same as running under it.
    views = strict.trace["policy_views"]
    assert views["strict"]["answer"] == strict.answer and views["lenient"]["answer"] == lenient.answer


def test_strict_keeps_a_list_s_supported_items_under_its_lead_in_and_drops_the_invented_one(make: Make) -> None:
    draft = "The tool shed lends members these tools:\n- wheelbarrows [1]\n- a lawnmower [1]\n- a petrol strimmer [1]"
    llm = ScriptedLLM(answers=[draft], yes=CONFIDENT)
    answer = make(llm).ask("Which tools can members borrow from the shed?")
    lines = answer.answer.splitlines()
    assert lines[0].startswith("The tool shed lends members these tools:")
    assert lines[1:] == ["- wheelbarrows [1]", "- a petrol strimmer [1]"]
    assert [(c.text, c.supported, c.lead_in) for c in answer.claims] == [
        ("The tool shed lends members these tools:", False, True), ("- wheelbarrows", True, False),
        ("- a petrol strimmer", True, False)]
    dropped = [c for c in answer.trace["verification"]["claims"] if "lawnmower" in c["text"]]
    assert [(c["supported"], c["reason"]) for c in dropped] == [(False, "uncited")]


# -- refusals ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("question", "refusal"), [("Who won the 2018 football World Cup?", REFUSAL),
                                                   ("法国的首都是哪里？", prompts.load("refusal.zh").text())])
def test_a_question_nothing_relevant_answers_is_refused_before_the_model(make: Make, question: str,
                                                                          refusal: str) -> None:
    llm = ScriptedLLM()  # nothing scripted: any call to the model fails the test
    items = list(make(llm).stream(question))
    assert items[0] == refusal and len(items) == 2 and isinstance(items[1], Answer)
    answer = items[1]
    assert answer.refused and answer.answer == refusal and not answer.citations and not answer.claims
    assert answer.trace["refused_before_llm"] is True and answer.usage.prompt_tokens == 0
    assert llm.calls == []


def test_over_a_mixed_language_kb_the_one_call_before_an_early_refusal_is_the_question_s_translation(
        make: Make) -> None:
    """With translation on (the default), retrieval searches the question in the KB's other language too, so the
    model is loaded and asked for the translation before the early refusal is decided; nothing else is asked."""
    llm = ScriptedLLM(translations=["2018年世界杯冠军是谁？"])
    answer = make(llm, translate_query=True).ask("Who won the 2018 football World Cup?")
    assert answer.refused and answer.trace["refused_before_llm"] is True and answer.answer == REFUSAL
    assert llm.kinds() == ["translate"] and answer.trace["translation"] == "2018年世界杯冠军是谁？"
    assert llm.calls[0].text == "Who won the 2018 football World Cup?"


def test_the_gate_saying_no_withdraws_the_same_draft_the_gate_saying_yes_delivers(make: Make) -> None:
    delivered = make(ScriptedLLM(answers=[MEAL_ANSWER], yes={**CONFIDENT, "evidence": 0.6})).ask(MEAL)
    llm = ScriptedLLM(answers=[MEAL_ANSWER], yes={**CONFIDENT, "gate": 0.05, "evidence": 0.6})
    withdrawn = make(llm).ask(MEAL)
    assert not delivered.refused and delivered.answer == MEAL_ANSWER
    assert delivered.trace["verification"]["trust"] == pytest.approx(trust_of(0.9, 0.6))

    # The draft is a verbatim quote, but its evidence (0.6) is below the fit's quote bar (0.8): nothing stays.
    assert withdrawn.refused and withdrawn.answer == REFUSAL and not withdrawn.citations and not withdrawn.claims
    verification = withdrawn.trace["verification"]
    assert verification["trust"] == pytest.approx(trust_of(0.05, 0.6)) and trust_of(0.05, 0.6) < 0.5
    assert [(c["supported"], c["reason"], c["quote"]) for c in verification["claims"]] == [(False, "not-stated", 1.0)]
    assert verification["extract"] is None and verification["delivered_by"] is None
    # A gate below one half asks for no extract candidates: the same calls as for the delivered draft.
    assert llm.kinds() == ["gate", "answer", "passage_gate", "evidence"]
    assert withdrawn.trace["raw_completion"] == MEAL_ANSWER
    # The refusal offers the passages, the one the checks found to answer first.
    assert withdrawn.related and withdrawn.related[0].chunk.source == "docs/travel.txt"


def test_the_model_s_own_refusal_is_a_refusal_and_no_claim_is_checked(make: Make) -> None:
    llm = ScriptedLLM(answers=[REFUSAL], yes={"gate": 0.3}, refusal_start=0.97)
    answer = make(llm).ask(MEAL)
    assert llm.kinds() == ["gate", "answer"]
    assert answer.refused and answer.answer == REFUSAL and not answer.citations and not answer.claims
    assert not answer.trace.get("refused_before_llm") and answer.usage.prompt_tokens > 0
    verification = answer.trace["verification"]
    assert verification["model_refused"] is True and verification["claims"] == []
    assert verification["signals"]["refusal_start"] == 0.97
    assert 1 <= len(answer.related) <= 3 and answer.related[0].chunk.source == "docs/travel.txt"


def test_a_refused_draft_gets_the_document_s_own_words_when_the_evidence_check_finds_them(make: Make) -> None:
    """The model refused although the gate said the passages answer: the passage units that speak most of the
    question are put to the evidence check, and one it is sure of is delivered as a quote (the extract)."""
    llm = ScriptedLLM(answers=[REFUSAL], yes={"gate": 0.9,
                                              "evidence": lambda call: 0.95 if "45 euros" in call.text else 0.1})
    answer = make(llm).ask(MEAL)
    assert llm.kinds()[:2] == ["gate", "answer"] and set(llm.kinds()[2:]) == {"evidence"}
    assert 1 <= len(llm.of("evidence")) <= 2
    assert not answer.refused and answer.answer == MEAL_ANSWER
    assert [(c.how, c.supported, c.citations) for c in answer.claims] == [("extract", True, [1])]
    assert answer.trace["verification"]["delivered_by"] == "extract"
    assert answer.trace["verification"]["extract"]["p"] == 0.95


def test_a_draft_without_the_number_asked_for_is_withdrawn_after_looking_for_an_extract(make: Make) -> None:
    question = "How much is the daily meal allowance on business trips?"
    llm = ScriptedLLM(answers=["Aurora Robotics pays a meal allowance on business trips [1]."],
                      yes={"gate": 0.9, "evidence": 0.2})
    answer = make(llm).ask(question)
    assert answer.refused and answer.answer == REFUSAL
    claims = answer.trace["verification"]["claims"]
    assert [(c["supported"], c["reason"]) for c in claims] == [(False, "no-answer")]
    # No sentence passed the rules: no passage gate; extract candidates are asked about and all fall short.
    assert "passage_gate" not in llm.kinds() and llm.kinds()[:2] == ["gate", "answer"]
    assert llm.of("evidence") and all(u["p"] == 0.2 for u in answer.trace["verification"]["units"])


def test_a_withdrawn_draft_shows_the_passage_the_checks_found_to_answer_first(make: Make) -> None:
    """Two passages packed, the tea farm's ranked first; the draft cites the travel policy, whose evidence the model
    finds to answer, but the gate's no sinks the trust score. The refusal's related passages lead with the travel
    policy, so the reader still finds the answer."""
    question = "What is the meal allowance on business trips and when do tea farm tours run?"
    no_quotes = Calibration("no quote or extract rule", {"en": TrustModel(0.0, {"gate": 1.0, "evidence": 1.0}, 0.5)})
    llm = ScriptedLLM(answers=["The daily meal allowance on business trips is 45 euros [2]."],
                      yes={"gate": 0.05, "passage_gate": 0.8, "evidence": 0.85})
    answer = make(llm, calibration=no_quotes).ask(question)
    assert [h["source"] for h in answer.trace["hits"][:2]] == ["docs/tea.txt", "docs/travel.txt"]
    assert [c.source for c in answer.packed] == ["docs/tea.txt", "docs/travel.txt"]
    assert answer.refused and answer.trace["verification"]["trust"] == pytest.approx(trust_of(0.05, 0.85))
    assert [(u["passage"], u["p"]) for u in answer.trace["verification"]["units"]] == [(2, 0.85)]
    assert [h.chunk.source for h in answer.related] == ["docs/travel.txt", "docs/tea.txt", "docs/tools.txt"]


def test_a_trust_bar_no_score_reaches_refuses_a_right_draft(make: Make) -> None:
    answer = make(ScriptedLLM(answers=[MEAL_ANSWER], yes=CONFIDENT), trust_min=0.99).ask(MEAL)
    verification = answer.trace["verification"]
    assert verification["trust_threshold"] == 0.99 and verification["trust"] == pytest.approx(trust_of(0.9, 0.7))
    assert answer.refused and answer.related[0].chunk.source == "docs/travel.txt"


# -- streaming ---------------------------------------------------------------------------------------
def test_the_draft_streams_after_the_gate_then_the_checked_answer_comes_last(make: Make) -> None:
    draft = f"{MEAL_ANSWER}\n{PARKING}"
    llm = ScriptedLLM(answers=[draft], yes=CONFIDENT)
    pieces: list[str] = []
    seen_at: list[list[str]] = []
    final: list[Answer] = []
    for item in make(llm).stream(MEAL):
        assert not final, "nothing may follow the Answer"
        seen_at.append(list(llm.kinds()))
        if isinstance(item, Answer):
            final.append(item)
        else:
            pieces.append(item)
    assert len(pieces) == len(draft.split()) and "".join(pieces) == draft
    assert all(kinds == ["gate", "answer"] for kinds in seen_at[:-1])  # the gate first, no check mid-stream
    assert seen_at[-1] == ["gate", "answer", "passage_gate", "evidence"]  # the checks before the Answer
    (answer,) = final
    # The Answer's text is the authoritative one: the streamed draft's unsupported sentence is gone.
    assert answer.answer == MEAL_ANSWER and answer.trace["raw_completion"] == draft
    assert answer.trace["timings"]["first_token_s"] <= answer.trace["timings"]["generate_s"]


# -- citations ---------------------------------------------------------------------------------------
def test_a_marker_pointing_to_no_passage_is_replaced_by_the_one_that_supports_the_sentence(make: Make) -> None:
    llm = ScriptedLLM(answers=["Greenleaf Tea Farm was founded by Mara Okafor [9]."], yes=CONFIDENT)
    answer = make(llm).ask("Who founded the Greenleaf Tea Farm?")
    packed = answer.trace["packed"]
    assert len(packed) < 9 and "[9]" not in answer.answer
    assert answer.answer == "Greenleaf Tea Farm was founded by Mara Okafor [1]."
    assert [(c.n, c.chunk.id) for c in answer.citations] == [(1, packed[0])]
    assert "Mara Okafor" in answer.citations[0].chunk.text and answer.claims[0].how == "corrected"
    assert llm.of("passage_gate")[0].text == user_message("gate_passage.en", n="1")  # the corrected number


# -- conversation and languages ------------------------------------------------------------------------
def test_a_follow_up_is_rewritten_by_the_model_before_retrieval(make: Make) -> None:
    llm = ScriptedLLM(answer_for=[("Who founded", "Greenleaf Tea Farm was founded by Mara Okafor [1]."),
                                  ("which year", "Mara Okafor founded the Greenleaf Tea Farm in 1987 [1].")],
                      condensed=["In which year did Mara Okafor found the Greenleaf Tea Farm?\nignored second line"],
                      yes=CONFIDENT)
    answerer = make(llm)
    first = answerer.ask("Who founded the Greenleaf Tea Farm?")
    assert "condense" not in llm.kinds()  # a first question has no history to resolve
    llm.calls.clear()
    follow_up = answerer.ask("In which year did she found it?", session_id=first.session_id)

    assert llm.kinds() == ["condense", "gate", "answer", "passage_gate", "evidence"]
    condense = llm.calls[0]
    assert (condense.max_tokens, condense.temperature) == (96, 0.0)
    assert condense.text.endswith("user: Who founded the Greenleaf Tea Farm?\n"
                                  "assistant: Greenleaf Tea Farm was founded by Mara Okafor [1].\n\n"
                                  "Last question: In which year did she found it?")
    standalone = "In which year did Mara Okafor found the Greenleaf Tea Farm?"
    assert follow_up.trace["standalone_question"] == standalone
    assert llm.of("answer")[0].text.endswith(f"Question: {standalone}")
    assert f"Question: {standalone}" in llm.of("evidence")[0].text
    assert follow_up.answer == "Mara Okafor founded the Greenleaf Tea Farm in 1987 [1]."
    assert follow_up.session_id == first.session_id
    assert [c.chunk.source for c in follow_up.citations] == ["docs/tea.txt"]
    history = answerer.ws.sessions.history(first.session_id or "")
    assert [m["content"] for m in history] == ["Who founded the Greenleaf Tea Farm?", first.answer,
                                               "In which year did she found it?", follow_up.answer]


def test_an_english_question_over_a_chinese_passage_is_translated_and_matched_by_meaning(make: Make) -> None:
    question = "How many books can a reader of the Xinghe community library borrow at once?"
    translated = "星河社区图书馆每位读者最多可以同时借几本书？"
    llm = ScriptedLLM(translations=[translated],
                      answers=["Each reader may borrow at most eight books at the same time [1]."], yes=CONFIDENT)
    answer = make(llm, translate_query=True).ask(question)
    assert llm.kinds() == ["translate", "gate", "answer", "passage_gate", "evidence"]
    assert llm.calls[0].text == question and answer.trace["translation"] == translated
    # Packed for an English question, the Chinese passage shows its quantities in digits too.
    assert "[1] (library.txt)" in llm.of("answer")[0].text and "八（8）本书" in llm.of("answer")[0].text
    assert not answer.refused and answer.answer == "Each reader may borrow at most eight books at the same time [1]."
    assert [c.chunk.source for c in answer.citations] == ["docs/library.txt"]
    assert [c.aligned for c in answer.claims] == [True]


# -- which fit judges ----------------------------------------------------------------------------------
def test_without_a_given_fit_the_bundled_generator_s_shipped_fit_judges_and_a_server_s_default_warns(
        make: Make) -> None:
    llm = ScriptedLLM(answers=[MEAL_ANSWER], yes=CONFIDENT)
    answerer = make(llm, calibration=None)
    answer = answerer.ask(MEAL)
    fit = calibration_for(answerer.ws.settings)
    verification = answer.trace["verification"]
    assert fit.fitted and verification["calibration"] == fit.label and fit.label.startswith("shipped fit")
    supported = [c for c in answer.claims if c.supported]
    expected = fit.model("en").score(trust_features(Signals(0.9, None, 0.8, 0.7), supported))
    assert verification["trust"] == pytest.approx(expected) and "warnings" not in answer.trace

    server = make(ScriptedLLM(answers=[MEAL_ANSWER], yes=CONFIDENT), calibration=None,
                  llm_base_url="http://127.0.0.1:9/v1").ask(MEAL)
    assert server.trace["warnings"] == [NO_FIT_WARNING] and server.trace["verification"]["calibrated"] is False
    assert server.trace["verification"]["calibration"] != fit.label


def test_the_fake_refuses_what_it_was_not_told() -> None:
    """The fake must not invent: an unscripted answer or check fails the test that caused it."""
    llm = ScriptedLLM(answers=["one"])
    messages = prompts.load("answer.en").messages(passages="[1] (a.txt) x", question="q?")
    assert llm.complete(messages, max_tokens=8, temperature=0.0).text == "one"
    with pytest.raises(Unscripted, match="no answer reply scripted"):
        llm.complete(messages, max_tokens=8, temperature=0.0)
    with pytest.raises(Unscripted, match="gate check"):
        llm.yes_probability([*messages, *prompts.load("gate.en").messages()])
    assert llm.kinds() == ["answer", "answer", "gate"]
