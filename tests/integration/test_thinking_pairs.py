"""Thinking vs no thinking on one question (issue 21 item 2), end to end on the tiny models: the
prompt really has an empty thinking part (a Qwen3-like template's own ``enable_thinking`` switch;
SmolLM2's template, which has none, an empty ``<think></think>`` prefill), the pair is linked both
ways in either order, ``show --json`` / ``stats --json`` report it, the Runs page's switch makes
the second run of a pair and Compare opened from either run sets the two side by side. Also
``show --json``'s importance agreement (issue 21 item 3) once two measures are cached."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backend.engine.models import LoadedModel
from backend.engine.trajectory import GenerationSettings, build_prompt
from backend.pipeline import run as run_module
from backend.pipeline.run import RunRequest, request_key, run_question

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
QWEN3_LIKE = (  # Qwen3's generation-prompt logic (tests/unit/test_no_thinking.py)
    "{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)
EMPTY_THINK = "<think>\n\n</think>\n\n"
QUESTION = "What is 2 + 2?"
# 8 sampled tokens (greedy decoding of the random tiny model gives only line breaks), L̂ at step ends only
CHEAP = dict(generation=GenerationSettings(max_new_tokens=8, temperature=1.0, seed=3), cuts="steps")


@pytest.fixture(scope="module")
def qwenish(tiny_llama):
    """The tiny Llama with a tokenizer whose chat template has Qwen3's thinking switch."""
    tok = copy.deepcopy(tiny_llama.tokenizer)
    tok.chat_template = QWEN3_LIKE
    return LoadedModel.from_objects("tiny-qwen3ish", tiny_llama.model, tok)


@pytest.fixture()
def prompts_generated(monkeypatch):
    """Every prompt the run pipeline generates from, in order."""
    seen: list[str] = []
    real = run_module.generate

    def recording(loaded, prompt, settings, prefix=""):
        seen.append(prompt)
        return real(loaded, prompt, settings, prefix)

    monkeypatch.setattr(run_module, "generate", recording)
    return seen


def test_template_switch_gives_an_empty_thinking_part_and_the_pair_links_both_ways(store, qwenish, prompts_generated):
    thinking_req = RunRequest(question=QUESTION, answer="4", model=qwenish.name, **CHEAP)
    no_thinking_req = replace(thinking_req, thinking=False)
    assert request_key(thinking_req, qwenish.fingerprint) != request_key(no_thinking_req, qwenish.fingerprint)
    thinking = run_question(thinking_req, store, loaded=qwenish)
    no_thinking = run_question(no_thinking_req, store, loaded=qwenish)
    switched = qwenish.tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert switched.endswith("<|im_start|>assistant\n" + EMPTY_THINK)
    assert prompts_generated == [build_prompt(qwenish.tokenizer, QUESTION, think=False), switched]
    run_t, run_n = store.open(thinking.key), store.open(no_thinking.key)
    assert run_n.prompt == switched  # scored after the same empty thinking part it was generated after
    assert run_n.empty_thinking == {"method": "template-switch", "markers": ["<think>", "</think>"]}
    assert run_n.trajectory == run_n.meta["response"]  # the visible response is the trajectory
    assert (run_t.condition, run_n.condition) == ("thinking", "no-thinking") and run_t.empty_thinking == {}
    assert thinking.key != no_thinking.key
    assert (run_t.partner, run_n.partner) == (no_thinking.key, thinking.key)  # both ways
    assert run_n.answer == run_t.answer == "4" and run_n.answer_source == "reference"
    index = store.list_runs().set_index("key")
    assert index.at[no_thinking.key, "condition"] == "no-thinking" and index.at[thinking.key, "partner"] == (
        no_thinking.key
    )
    again = run_question(no_thinking_req, store, loaded=qwenish)
    assert again.cached and again.key == no_thinking.key and store.open(again.key).partner == thinking.key


def test_prefill_without_a_switch_and_the_link_made_in_the_other_order(store, tiny_llama, prompts_generated):
    no_thinking_req = RunRequest(question=QUESTION, answer="4", model=tiny_llama.name, thinking=False, **CHEAP)
    first = run_question(no_thinking_req, store, loaded=tiny_llama)
    run_n = store.open(first.key)
    assert run_n.partner is None  # no thinking run yet
    expected = build_prompt(tiny_llama.tokenizer, QUESTION, think=False) + EMPTY_THINK  # SmolLM2's template
    assert prompts_generated == [expected] and run_n.prompt == expected
    assert run_n.empty_thinking == {"method": "prefill", "markers": ["<think>", "</think>"]}
    second = run_question(replace(no_thinking_req, thinking=True), store, loaded=tiny_llama)
    assert store.open(first.key).partner == second.key and store.open(second.key).partner == first.key
    imported = run_question(  # an imported trace has no partner request: never linked
        RunRequest(question=QUESTION, answer="4", trajectory="2 + 2 = 4.", model=tiny_llama.name, thinking=False),
        store,
        loaded=tiny_llama,
    )
    imported_run = store.open(imported.key)
    assert imported_run.partner is None and imported_run.prompt == expected and imported_run.trajectory == "2 + 2 = 4."


def test_show_and_stats_json_report_the_pair_and_the_importance_agreement(store, tiny_llama, run_copy, capsys):
    from backend.analysis.dataset.thinking_pairs import thinking_comparison
    from backend.analysis.importance.run import compute_run_importance
    from backend.cli import main

    base = RunRequest(question=QUESTION, answer="4", model=tiny_llama.name, **CHEAP)
    t_key = run_question(base, store, loaded=tiny_llama).key
    n_key = run_question(replace(base, thinking=False), store, loaded=tiny_llama).key
    assert main(["--cache-dir", str(store.root), "show", n_key[:12], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["thinking"] == {
        "condition": "no-thinking",
        "partner": t_key,
        "empty_thinking": {"method": "prefill", "markers": ["<think>", "</think>"]},
    }
    assert shown["importance_agreement"] == []  # no importance cached

    assert main(["--cache-dir", str(store.root), "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["thinking_pairs"]
    expected = thinking_comparison(store.list_runs())
    assert (stats["n_pairs"], stats["n_questions"]) == (1, 1)
    loss = next(row for row in stats["summary"] if row["statistic"] == "final_loss")
    assert loss["difference"] == pytest.approx(expected.summary.iloc[0]["difference"])
    assert loss["difference"] == pytest.approx(
        store.open(n_key).summary.final_loss - store.open(t_key).summary.final_loss
    )
    assert loss["difference_low"] is None and loss["n_questions"] == 1  # one question: no interval
    assert main(["--cache-dir", str(store.root), "stats", "condition=no-thinking"]) == 0
    assert "thinking vs no thinking: 1 pairs" in capsys.readouterr().out

    copy_store, key = run_copy  # the tiny run, with ablation and attention importance cached
    compute_run_importance(copy_store.open(key), tiny_llama, store=copy_store, attention=True)
    assert main(["--cache-dir", str(copy_store.root), "show", key, "--json"]) == 0
    agreement = json.loads(capsys.readouterr().out)["importance_agreement"]
    assert [(row["a"], row["b"]) for row in agreement] == [("ablation", "attention")]
    assert {"spearman", "spearman_low", "spearman_high", "kendall", "kendall_low", "kendall_high", "n"} <= set(
        agreement[0]
    )


def test_batch_no_thinking_pairs_every_question_with_the_plain_batch(store, provided, tmp_path, capsys):
    from backend.analysis.dataset.thinking_pairs import thinking_comparison
    from backend.cli import main

    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        '{"id": "a", "question": "What is 2 + 2?", "answer": "4"}\n{"id": "b", "question": "What is 3 + 3?", "answer": "6"}\n'
    )
    common = ["--cache-dir", str(store.root), "batch", str(questions), "--model", provided.name, "--quiet"]
    common += ["--max-new-tokens", "8", "--temperature", "1", "--seed", "3", "--cuts", "steps"]
    assert main(common) == 0 and main([*common, "--no-thinking"]) == 0
    capsys.readouterr()
    comparison = thinking_comparison(store.list_runs())
    assert len(comparison.pairs) == 2 and len(comparison.per_question) == 2
    for pair in comparison.pairs.itertuples():
        assert store.open(pair.key_no_thinking).partner == pair.key_thinking
        assert store.open(pair.key_thinking).partner == pair.key_no_thinking


# ----------------------------------------------------------------------------- pages
def _app(root, monkeypatch, page: str | None = None, **params) -> AppTest:
    monkeypatch.setenv("RAML_CACHE_DIR", str(root))
    at = AppTest.from_file(MAIN, default_timeout=120)
    for name, value in params.items():
        at.query_params[name] = value
    at.run()
    return at.switch_page(page).run() if page else at


def _no_errors(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _chart(at, key: str) -> dict:
    for el in at.get("plotly_chart"):
        if el.proto.id.endswith(key):
            return json.loads(el.proto.spec)
    raise AssertionError(f"no chart {key} in {[el.proto.id for el in at.get('plotly_chart')]}")


def test_runs_switch_makes_the_partner_and_compare_shows_the_pair_from_either_run(
    store, tiny_llama, monkeypatch, request
):
    from backend.engine import provider
    from backend.jobs import wait_for

    provider.register(tiny_llama, "tiny-test")  # the server's worker serves it by name
    request.addfinalizer(lambda: provider.unregister("tiny-test"))
    question = "What is 7 - 4?"
    thinking = run_question(  # the settings the form sends below, with thinking
        RunRequest(question=question, answer="3", model="tiny-test", **CHEAP), store, loaded=tiny_llama
    ).key

    at = _app(store.root, monkeypatch, "views/runs.py")
    at.text_input(key="runs_new_model").input("tiny-test")
    at.text_area(key="runs_new_question").input(question)
    at.text_input(key="runs_new_answer").input("3")
    at.number_input(key="runs_new_max_tokens").set_value(8)
    at.number_input(key="runs_new_temperature").set_value(1.0)
    at.number_input(key="runs_new_seed").set_value(3)
    at.selectbox(key="runs_new_cuts").set_value("steps")
    at.toggle(key="runs_new_no_thinking").set_value(True)
    next(b for b in at.button if b.label == "Estimate cost").click().run()
    _no_errors(at)
    assert any("after an empty thinking part" in i.value for i in at.info)
    at.button(key="runs_new_start").click().run()
    _no_errors(at)
    job = wait_for(store, at.session_state["runs_last_job"], timeout=300)
    assert job.state == "finished" and job.params["thinking"] is False, job.error
    (no_thinking,) = job.results
    run_n = store.open(no_thinking)
    assert (
        run_n.condition == "no-thinking" and run_n.partner == thinking and store.open(thinking).partner == no_thinking
    )

    library = _app(store.root, monkeypatch, "views/runs.py")
    library.selectbox(key="runs_selected").set_value(no_thinking).run()
    library.button(key="runs_compare_pair").click().run()
    _no_errors(library)
    assert no_thinking in str(library.query_params["focus"])  # Compare, opened on this run

    for opened_from, partner in ((no_thinking, thinking), (thinking, no_thinking)):
        page = _app(store.root, monkeypatch, "views/compare.py", focus=opened_from)
        _no_errors(page)
        chosen = next(m for m in page.multiselect if m.label == "Runs")
        assert set(chosen.value) == {opened_from, partner}  # its partner picked with it
        metrics = {m.label: m.value for m in page.metric}
        assert metrics["Final L̂, thinking"] == f"{store.open(thinking).summary.final_loss:.3f}"
        assert metrics["Final L̂, no thinking"] == f"{run_n.summary.final_loss:.3f}"
        figure = _chart(page, "compare_pair_chart_0")
        assert [t["name"] for t in figure["data"] if t.get("name")] == ["thinking", "no thinking"]
        assert figure["layout"]["xaxis"]["title"]["text"] == "trajectory tokens read (cut point c)"

    dataset = _app(store.root, monkeypatch, "views/dataset.py")
    _no_errors(dataset)
    assert any(h.value == "Thinking vs no thinking" for h in dataset.subheader)
    assert any("no interval from fewer than 3 questions" in c.value for c in dataset.caption)
