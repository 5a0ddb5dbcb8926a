"""View state in the URL: ``?run=KEY&step=N&layer=L&space=proxy|hidden&present=1``.

Parsing is pure (no Streamlit) so it is unit-tested directly; every bad value becomes a
friendly one-line warning and a valid fallback, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from backend.store.runs import KEY_PATTERN

SPACES = ("proxy", "hidden", "exact")
SPACE_LABELS = {
    "proxy": "parameter-proxy space (MLP ΔW)",
    "hidden": "hidden-state space (residual stream)",
    "exact": "exact all-layer update (W_o ΔW; layer -1 = all)",
}
MAX_PARAM_CHARS = 100
KNOWN_PARAMS = ("run", "step", "layer", "space", "present")


@dataclass
class UrlState:
    """What the URL asks for, syntax-checked; ``None`` = not given (or unusable)."""

    run: str | None = None
    step: int | None = None
    layer: int | None = None
    space: str = "proxy"
    present: bool = False
    warnings: list[str] = field(default_factory=list)


def _shown(value: str) -> str:
    return value if len(value) <= 40 else value[:40] + "…"


def _as_int(name: str, raw: str, warnings: list[str]) -> int | None:
    try:
        return int(raw.strip())
    except ValueError:
        warnings.append(f"URL parameter {name}='{_shown(raw)}' is not a whole number; ignored.")
        return None


def parse_query(params: Mapping[str, object]) -> UrlState:
    """Read query parameters (values are strings, or lists whose last item counts)."""
    out = UrlState()
    for name in KNOWN_PARAMS:
        raw = params.get(name)
        if raw is None:
            continue
        if isinstance(raw, (list, tuple)):
            raw = raw[-1] if raw else ""
        raw = str(raw)
        if len(raw) > MAX_PARAM_CHARS:
            out.warnings.append(f"URL parameter {name} is too long ({len(raw)} characters); ignored.")
            continue
        if name == "run":
            key = raw.strip()
            if not KEY_PATTERN.match(key):
                out.warnings.append(
                    f"'{_shown(key)}' is not a run key (expected 16-64 lowercase hex characters); "
                    "showing another run instead."
                )
            else:
                out.run = key
        elif name == "step":
            out.step = _as_int("step", raw, out.warnings)
        elif name == "layer":
            out.layer = _as_int("layer", raw, out.warnings)
        elif name == "space":
            if raw.strip() in SPACES:
                out.space = raw.strip()
            else:
                out.warnings.append(f"URL parameter space='{_shown(raw)}' is not one of proxy, hidden; showing proxy.")
        elif name == "present":
            out.present = raw.strip().lower() in ("1", "true", "yes", "on")
    return out


def resolve_run(requested: str | None, available: list[str], fallback: str | None) -> tuple[str | None, str | None]:
    """(run to show, warning): the requested run if it is cached, else ``fallback`` or the first."""
    default = fallback if fallback in available else (available[0] if available else None)
    if requested is None:
        return default, None
    if requested in available:
        return requested, None
    return default, f"No run {requested[:16]}… in the cache; showing {'another run' if default else 'nothing'} instead."


def clamp_step(step: int | None, n_steps: int, default: int = 0) -> tuple[int, str | None]:
    """(boundary in 0..n_steps, warning) for a requested step."""
    if step is None:
        return min(default, n_steps), None
    if 0 <= step <= n_steps:
        return step, None
    fixed = min(max(step, 0), n_steps)
    return fixed, f"Step {step} is out of range for this run (0..{n_steps}); showing step {fixed}."


def resolve_layer(layer: int | None, available: list[int], space: str) -> tuple[int | None, str | None]:
    """(layer, warning): the requested layer if the space stores it, else the middle stored one."""
    if not available:
        return None, None
    default = available[len(available) // 2]
    if layer is None or layer in available:
        return (default if layer is None else layer), None
    return default, f"Layer {layer} is not stored for the {space} space of this run; showing layer {default}."
