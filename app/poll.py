"""Polling that costs nothing when nothing changes (issue 26).

A page that follows a job redraws a small fragment now and then. ``st.fragment(run_every=...)``
reruns at one fixed rate for as long as the fragment is drawn; here the server picks the delay
before each next poll instead: ``FAST_S`` after a poll that saw a change (a job moved, started,
ended), doubling up to ``SLOWEST_S`` while the polls see nothing new (a job waiting behind another
process's job, a long step without progress reports). The browser holds the timer (a one-line
component, ``ticker``): when it fires it reruns only the fragment that drew it. Without an active
job no fragment draws a ticker, so an idle page makes no rerun at all.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

FAST_S = 1.0
SLOWEST_S = 16.0

_TICKER_JS = """
export default function (component) {
  const { data, setTriggerValue } = component;
  if (!data) return;
  const timers = window.__ramlTicks || (window.__ramlTicks = {});
  clearTimeout(timers[data.name]);
  timers[data.name] = setTimeout(function () { setTriggerValue('tick', data.seq); }, data.delay_ms);
  return function () { clearTimeout(timers[data.name]); };
}
"""

_ticker = st.components.v2.component("raml_ticker", js=_TICKER_JS)


def next_delay(
    previous_s: float | None, changed: bool, *, fast_s: float = FAST_S, slowest_s: float = SLOWEST_S
) -> float:
    """Seconds until the next poll: ``fast_s`` after a change (or the first poll), else twice the
    previous delay, at most ``slowest_s``."""
    if changed or previous_s is None:
        return fast_s
    return min(max(previous_s, fast_s) * 2.0, slowest_s)


def backoff(name: str, signature: object) -> float:
    """The delay for poller ``name`` of this session, given what it shows now (``signature``: any
    comparable value that changes exactly when the drawing should)."""
    state = st.session_state.setdefault(f"poll_{name}", {"signature": None, "delay": None, "seq": 0})
    changed = state["signature"] != signature
    state["delay"] = next_delay(state["delay"], changed)
    state["signature"] = signature
    state["seq"] += 1
    return state["delay"]


def ticker(name: str, delay_s: float, on_tick: Callable[[], None] | None = None) -> None:
    """Rerun the enclosing fragment once, ``delay_s`` seconds from now (the browser's timer)."""
    seq = st.session_state.get(f"poll_{name}", {}).get("seq", 0)
    _ticker(
        key=f"poll_ticker_{name}",
        data={"name": name, "delay_ms": round(delay_s * 1000), "seq": seq},
        on_tick_change=on_tick or (lambda: None),
    )


def reset(name: str) -> None:
    """Forget poller ``name``'s backoff (its job is over)."""
    st.session_state.pop(f"poll_{name}", None)
