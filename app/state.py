"""View state in the URL: ``?run=KEY&step=N&layer=L&space=proxy|hidden&present=1``, plus Explore's
settings dataclass and screen layout (chart heights from the browser's viewport height).

Parsing is pure (no Streamlit) so it is unit-tested directly; every bad value becomes a
friendly one-line warning and a valid fallback, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from backend.errors import RamlError
from backend.store.keys import AmbiguousKeyError, match_key, normalize_prefix

SPACES = ("proxy", "hidden", "exact")
SPACE_LABELS = {
    "proxy": "parameter-proxy space (MLP ΔW)",
    "hidden": "hidden-state space (residual stream)",
    "exact": "exact all-layer update (W_o ΔW)",
}
SPACE_SHORT = {"proxy": "proxy ΔW", "hidden": "hidden state", "exact": "exact update"}  # headings, captions
EXACT_ALL_LAYERS = -1  # the exact space's "layer" of the full all-layer update (backend.analysis.spaces.proxy)
MAX_PARAM_CHARS = 100
KNOWN_PARAMS = ("run", "step", "layer", "space", "present", "lens")
LENS_KINDS = ("logit", "tuned")  # backend.analysis.lens.use.LENS_KINDS
# UMAP and its trustworthiness score say little about a handful of points (issue 14): below this
# many boundaries Explore offers PCA only and shows no trustworthiness.
MIN_UMAP_POINTS = 12
DEFAULT_VIEWPORT_H = 900
MIN_VIEWPORT_H, MAX_VIEWPORT_H = 480, 2400


@dataclass
class UrlState:
    """What the URL asks for, syntax-checked; ``None`` = not given (or unusable)."""

    run: str | None = None
    step: int | None = None
    layer: int | None = None
    space: str = "proxy"
    present: bool = False
    lens: str = "logit"  # the lens grid's readout: "logit" | "tuned"
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
        if name == "run":  # a full key or a unique prefix, as the CLI takes it (backend.store.keys)
            try:
                out.run = normalize_prefix(raw)
            except RamlError as exc:
                out.warnings.append(f"{exc}; showing another run instead.")
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
        elif name == "lens":
            if raw.strip() in LENS_KINDS:
                out.lens = raw.strip()
            else:
                out.warnings.append(f"URL parameter lens='{_shown(raw)}' is not one of logit, tuned; showing logit.")
    return out


def resolve_run(requested: str | None, available: list[str], fallback: str | None) -> tuple[str | None, str | None]:
    """(run to show, warning): the requested run if it is cached, else ``fallback`` or the first."""
    default = fallback if fallback in available else (available[0] if available else None)
    if requested is None:
        return default, None
    try:
        return match_key(requested, available), None  # a unique prefix opens its run
    except AmbiguousKeyError as exc:
        return default, f"{exc}; showing {'another run' if default else 'nothing'} instead."
    except RamlError:
        pass
    return default, f"No run {requested[:16]}… in the cache; showing {'another run' if default else 'nothing'} instead."


def clamp_step(step: int | None, n_steps: int, default: int = 0) -> tuple[int, str | None]:
    """(boundary in 0..n_steps, warning) for a requested step."""
    if step is None:
        return min(default, n_steps), None
    if 0 <= step <= n_steps:
        return step, None
    fixed = min(max(step, 0), n_steps)
    return fixed, f"Step {step} is out of range for this run (0..{n_steps}); showing step {fixed}."


def default_layer(space: str, available: list[int]) -> int | None:
    """Each space's own default: the full update (all layers) in the exact space, else the middle stored layer."""
    if not available:
        return None
    if space == "exact" and EXACT_ALL_LAYERS in available:
        return EXACT_ALL_LAYERS
    return available[len(available) // 2]


def layer_label(space: str, layer: int | None) -> str:
    """How a layer of ``space`` is named on screen (the exact space's -1 is "all layers")."""
    if layer is None:
        return ""
    return "all layers" if space == "exact" and layer == EXACT_ALL_LAYERS else f"layer {layer}"


def resolve_layer(layer: int | None, available: list[int], space: str) -> tuple[int | None, str | None]:
    """(layer, warning): the requested layer if the space stores it, else the space's default."""
    if not available:
        return None, None
    default = default_layer(space, available)
    if layer is None or layer in available:
        return (default if layer is None else layer), None
    return default, f"Layer {layer} is not stored for the {space} space of this run; showing layer {default}."


@dataclass(frozen=True)
class ExploreSettings:
    """What Explore's sidebar returns: how to draw the run (not where the cursor is)."""

    alpha: float
    lens_value: str = "nll"  # "nll" | "p_answer"
    lens_kind: str = "logit"  # "logit" | "tuned" (the URL's ``lens``)
    method: str = "pca"  # "pca" | "umap"
    speed: float = 1.0  # seconds per step while playing
    colour_tokens: bool = False  # per-token text coloured by the loss change each token caused


@dataclass(frozen=True)
class ExploreLayout:
    """Pixel sizes of Explore's views so text, loss, path and lens fit one screen of height ``viewport_h``."""

    viewport_h: int
    chart_h: int  # each of the four views' height (two rows of two)
    text_h: int  # trajectory box (the step card sits under it, in the same row)
    scale: float  # font scale of the charts


# The question header (app/panels/header.py): wrapped, whole in presentation mode, at most
# QUESTION_LINES lines elsewhere (the rest on hover). The server knows only the window's height,
# so its width is estimated as a 16:9 screen's (presentation screens are).
QUESTION_LINES = 3
QUESTION_FONT_PX = {False: 1.12 * 16, True: 1.25 * 17}  # ui.BASE_CSS / ui.PRESENT_CSS
QUESTION_LINE = 1.35  # line height, in font sizes
SIDEBAR_PX = 336


def question_lines(n_chars: int, viewport_h: int, present: bool) -> int:
    """Lines the question header wraps into at ``viewport_h`` (estimated; at least 1)."""
    width = viewport_h * 16 / 9 - 96 - (0 if present else SIDEBAR_PX)
    per_line = max(20, int(width / (QUESTION_FONT_PX[present] * 0.52)))
    lines = max(1, -(-int(n_chars) // per_line))
    return lines if present else min(lines, QUESTION_LINES)


def explore_layout(viewport_h: int | None, present: bool, question_chars: int = 0) -> ExploreLayout:
    """Two rows of views under the header and the step controls, filling ``viewport_h``.

    Fixed costs (page padding, a one-line header, controls, two view headings) are about 320 px in
    the normal page and 240 px in presentation mode (no sidebar, no captions); each further line
    the question wraps into (``question_chars`` long) costs one line of the header.
    """
    vh = DEFAULT_VIEWPORT_H if viewport_h is None else int(min(max(viewport_h, MIN_VIEWPORT_H), MAX_VIEWPORT_H))
    extra_lines = question_lines(question_chars, vh, present) - 1 if question_chars else 0
    overhead = (262 if present else 318) + round(extra_lines * QUESTION_FONT_PX[present] * QUESTION_LINE)
    chart_h = max(200, (vh - overhead) // 2)
    scale = 1.0 if not present else (1.25 if vh >= 1000 else 1.0)
    text_h = max(90, chart_h - round(118 * scale))  # the compact step card sits under the text
    return ExploreLayout(viewport_h=vh, chart_h=chart_h, text_h=text_h, scale=scale)


def projection_methods(n_points: int) -> tuple[str, ...]:
    """2-D projections worth offering for a path of ``n_points`` boundaries."""
    return ("pca", "umap") if n_points >= MIN_UMAP_POINTS else ("pca",)
