"""The stepper's fill mark (``backend.plots.fill``): a template and per-boundary values rebuild
each boundary's HTML exactly, pooled pieces are stored once, and malformed marks are refused."""

from __future__ import annotations

import json

import pytest

from backend.plots import fill


def test_fill_rebuilds_every_boundary_and_pools_repeated_pieces():
    chips = [["<i>a</i>", "0.5"], [], ["<i>a</i>", "0.5", "<i>b</i>", "0.1"]]
    mark = fill.fill_mark(["<p>", " | ", "</p>"], [["x", "y", "z"], fill.pooled(chips)])
    assert [fill.html_at(mark, b) for b in range(3)] == [
        "<p>x | <i>a</i>0.5</p>",
        "<p>y | </p>",
        "<p>z | <i>a</i>0.5<i>b</i>0.1</p>",
    ]
    assert mark["slots"][1]["pool"] == ["<i>a</i>", "0.5", "<i>b</i>", "0.1"]  # each distinct piece once
    assert mark["slots"][1]["at"] == [[0, 1], [], [0, 1, 2, 3]]
    assert fill.n_boundaries(mark) == 3
    assert json.loads(json.dumps(mark)) == mark  # plain JSON: what the component receives


def test_fill_refuses_parts_and_slots_that_do_not_line_up():
    with pytest.raises(ValueError, match="one more part than slots"):
        fill.fill_mark(["<p>", "</p>"], [["x"], ["y"]])
    with pytest.raises(ValueError, match="one value per boundary"):
        fill.fill_mark(["<p>", "|", "</p>"], [["x", "y"], fill.pooled([["a"]])])


def test_the_step_card_sent_as_a_fill_is_every_card(tiny_run):
    from backend.plots.step_card import all_cards, card_fill

    store, key = tiny_run
    run = store.open(key)
    mark = card_fill(run, None)
    cards = all_cards(run, None)
    assert [fill.html_at(mark, b) for b in range(len(cards))] == cards
    assert "Before any thinking" in cards[0] and "<b>Step 1</b>" in cards[1]
    assert len(json.dumps(mark)) < len(json.dumps(cards))
