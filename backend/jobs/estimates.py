"""Honest estimates: the cost of a job before it starts, from this machine's measured
throughput (recorded per model and device by past jobs in the queue's ``throughput``
table), including the model load when the model is not already in memory.

Metrics (per model fingerprint and device):
- ``load_s``: loading from the converted copy or a local folder;
- ``load_gguf_s``: the first load of a GGUF (de-quantizing + storing the converted copy);
- ``generate_tps``: generated tokens per second;
- ``analyze_tps``: probe-engine tokens per second (n + C·m, docs/architecture.md §4);
- ``surface_point_s``, ``landscape_point_s``: seconds per grid point.
Before any job has been measured the defaults below (this project's 2-core CPU) are used,
and the estimate says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from backend.pipeline.run import RunRequest, estimate_probe_tokens

WARN_ABOVE_S = 60.0
# First guesses for a 2-core CPU and SmolLM2-135M, replaced by measurements after one job.
DEFAULTS = {
    "load_s": 4.0,
    "load_gguf_s": 30.0,
    "generate_tps": 12.0,
    "analyze_tps": 300.0,
    "surface_point_s": 0.5,
    "landscape_point_s": 5.0,
}
TEMPLATE_TOKENS = 11  # the RaML template in SmolLM2's tokenizer
CHARS_PER_TOKEN = 4.0


@dataclass
class Estimate:
    """Seconds a job should take, split into parts, and where the rates come from."""

    seconds: float
    parts: dict[str, float] = field(default_factory=dict)
    measured: bool = False  # every rate used came from this machine's past jobs

    @property
    def warn(self) -> bool:
        return self.seconds > WARN_ABOVE_S

    def describe(self) -> str:
        parts = ", ".join(f"{k} {_fmt(v)}" for k, v in self.parts.items() if v >= 0.5)
        basis = "measured on this machine" if self.measured else "first guess (no job measured on this machine yet)"
        return f"≈ {_fmt(self.seconds)} ({parts or 'instant'}; {basis})"


def _fmt(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{seconds / 60:.1f} min"


class Rates:
    """Throughput lookups for one model + device, falling back to ``DEFAULTS``."""

    def __init__(self, queue, model_fingerprint: str, device: str):
        self.queue, self.model, self.device = queue, model_fingerprint, device
        self.all_measured = True

    def get(self, metric: str) -> float:
        value = self.queue.measured(self.model, self.device, metric) if self.queue is not None else None
        if value is None or not math.isfinite(value) or value <= 0:
            self.all_measured = False
            return DEFAULTS[metric]
        return value


def model_state(name: str) -> tuple[str, bool, bool]:
    """(fingerprint, loaded in this process, needs the first GGUF conversion) without loading."""
    from backend.engine import converted, models

    spec = models.resolve(name)
    fingerprint = spec.fingerprint()
    in_memory = models.is_loaded(name)
    needs_conversion = False
    if spec.gguf_file:
        dtype = str(models.pick_device()[1]).replace("torch.", "")
        needs_conversion = not converted.is_complete(converted.converted_dir(fingerprint, dtype))
    return fingerprint, in_memory, needs_conversion


def load_seconds(rates: Rates, in_memory: bool, needs_conversion: bool) -> float:
    if in_memory:
        return 0.0
    return rates.get("load_gguf_s" if needs_conversion else "load_s")


def estimate_run(req: RunRequest, queue, device: str, *, model_state_=None) -> Estimate:
    """Seconds for one run: load (unless in memory) + generation + the analysis pass."""
    fingerprint, in_memory, needs_conversion = model_state_ or model_state(req.model)
    rates = Rates(queue, fingerprint, device)
    return _run_estimate(rates, [req], load_seconds(rates, in_memory, needs_conversion), req.generation.max_new_tokens)


def estimate_batch(reqs: list[RunRequest], queue, device: str, *, model_state_=None) -> Estimate:
    """Seconds for many runs of one model: one load, then each question's generation + analysis."""
    if not reqs:
        return Estimate(0.0, {}, True)
    fingerprint, in_memory, needs_conversion = model_state_ or model_state(reqs[0].model)
    rates = Rates(queue, fingerprint, device)
    return _run_estimate(
        rates, reqs, load_seconds(rates, in_memory, needs_conversion), reqs[0].generation.max_new_tokens
    )


def _run_estimate(rates: Rates, reqs: list[RunRequest], load_s: float, max_new_tokens: int) -> Estimate:
    gen_s = analyze_s = 0.0
    for req in reqs:
        if req.trajectory is None:
            n_tokens = int(max_new_tokens)
            gen_s += n_tokens / rates.get("generate_tps")
        else:
            n_tokens = max(1, math.ceil(len(req.trajectory) / CHARS_PER_TOKEN))
        m = TEMPLATE_TOKENS + max(1, math.ceil(len(req.answer or "xx") / 3))
        probe_tokens = estimate_probe_tokens(n_tokens, req.cuts, m, max(1, n_tokens // 20))
        analyze_s += probe_tokens / rates.get("analyze_tps")
    parts = {"load": load_s, "generate": gen_s, "analyze": analyze_s}
    return Estimate(sum(parts.values()), parts, rates.all_measured)


def estimate_grid(
    kind: str, points: int, queue, model_fingerprint: str, device: str, in_memory: bool, needs_conversion: bool = False
) -> Estimate:
    """Seconds for a proxy surface (``surface``) or a random landscape (``landscape``) grid."""
    rates = Rates(queue, model_fingerprint, device)
    load_s = load_seconds(rates, in_memory, needs_conversion)
    grid_s = points * rates.get(f"{kind}_point_s")
    return Estimate(load_s + grid_s, {"load": load_s, kind: grid_s}, rates.all_measured)
