"""What defines a run (``RunRequest``) and every check of it before a model's weights load
(``validate``: no model at all; ``check_before_load``: the model's config and tokenizer).

Torch-free at import, so a command or a job submission refuses a bad flag in a fraction of a
second (issue 26); the run itself is ``backend.pipeline.run``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from backend.engine import limits
from backend.engine.models import DEFAULT_MODEL, LoadedModel, load_token_counter, load_tokenizer, read_shape, resolve
from backend.engine.openai_generator import (
    DEFAULT_DEADLINE_S,
    DEFAULT_MAX_RESPONSE_MB,
    GENERATORS,
    check_base_url,
    check_transport_limits,
)
from backend.engine.specs import parse_cuts, parse_segmentation
from backend.engine.trajectory import RAML_TEMPLATE, GenerationSettings
from backend.errors import InputError

DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class RunRequest:
    """Everything that defines a run. Same request -> same cache key -> cache hit."""

    question: str
    answer: str | None = None  # None: fall back to the model's own final answer
    trajectory: str | None = None  # None: generate one with the model
    model: str = DEFAULT_MODEL
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    template: str = RAML_TEMPLATE
    segmentation: str = "sentences"
    cuts: str = "all"  # "all", "stride:K", "steps", or "auto" (backend.pipeline.cut_policy: all within the budget)
    proxy_layers: list[int] | None = None  # None: 4 evenly spaced + last
    truncate: bool = False  # over-long trajectory: keep its last part instead of failing
    trust_remote_code: bool = False
    label: str = ""  # e.g. the JSONL id; shown in the library, not part of the key
    generator: str = "local"  # "local": the scorer model writes the trace; "openai": a remote server
    base_url: str | None = None  # OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1
    generator_model: str | None = None  # the model name that server serves
    generator_deadline_s: float = DEFAULT_DEADLINE_S  # the whole request to that server; a limit, not in the key
    generator_max_mb: float = DEFAULT_MAX_RESPONSE_MB  # its reply's size; a limit, not in the key
    device: str | None = None  # scorer placement: None = CUDA if available, else CPU
    dtype: str | None = None  # scorer dtype: None = bf16 on CUDA, fp32 on CPU
    # a branch of another run (issue 13): {"parent": key, "branch_at": step, "kind": ..., settings}; in the key
    branch: dict | None = None
    max_answer_tokens: int = limits.DEFAULT_MAX_ANSWER_TOKENS  # a limit, not part of the key
    max_question_tokens: int = limits.DEFAULT_MAX_QUESTION_TOKENS  # a limit, not part of the key
    origin: dict | None = None  # an imported record: what its file says beyond the trace; meta only, not in the key
    cut_budget_s: float | None = None  # cuts "auto": the scoring budget (None: cut_policy.default_budget_s()); a limit
    cut_policy: dict | None = None  # how the cuts were chosen (cut_policy.CutPolicy.to_json); meta only, not in the key
    # False: the no-thinking condition (RaML's "nothinking" mode): the prompt's thinking part is empty
    # (the template's own switch, else an empty think block) and the response is the trajectory; in the key
    thinking: bool = True

    def validate(self) -> None:
        """Checks that need no model (backend.engine.limits; the rest in ``check_before_load``)."""
        if not isinstance(self.question, str) or not self.question.strip():
            raise InputError("question is empty")
        if self.answer is not None and (not isinstance(self.answer, str) or not self.answer.strip()):
            raise InputError("answer is empty (leave it out to use the model's own final answer)")
        if self.trajectory is not None and not isinstance(self.trajectory, str):
            raise InputError("trajectory must be a string")
        if self.trajectory is not None and not self.trajectory.strip():
            raise InputError("trajectory is empty")
        if "\x00" in self.question or (self.answer is not None and "\x00" in self.answer):
            raise InputError("question or answer contains a NUL byte")
        g = self.generation
        limits.check_sampling(g.temperature, g.top_p, g.max_new_tokens)
        if not isinstance(self.template, str) or not self.template.strip():
            raise InputError("the template is empty or only whitespace (--template)")
        limits.check_limit_values(limits.Limits(self.max_answer_tokens, self.max_question_tokens))
        limits.check_proxy_layers(self.proxy_layers, None)
        parse_segmentation(self.segmentation)
        if self.cuts != "auto":
            parse_cuts(self.cuts, 1)
        if self.cut_budget_s is not None and not (
            isinstance(self.cut_budget_s, (int, float)) and 0 < self.cut_budget_s < float("inf")
        ):
            raise InputError(f"--budget-s {self.cut_budget_s} must be a positive number of seconds")
        if self.generator not in GENERATORS:
            raise InputError(f"unknown --generator '{self.generator}': use local or openai")
        if self.generator == "openai" and self.trajectory is None:
            check_base_url(self.base_url)
            check_transport_limits(self.generator_deadline_s, self.generator_max_mb)
            if not self.generator_model:
                raise InputError("--generator openai needs --generator-model NAME (the model the server serves)")
        if not self.thinking and self.generator != "local" and self.trajectory is None:
            raise InputError(
                "--no-thinking empties the thinking part of the local model's prompt: it needs --generator local"
            )
        if self.dtype is not None and self.dtype not in DTYPES:
            raise InputError(f"unknown --dtype '{self.dtype}': use one of {', '.join(DTYPES)}")
        if self.device is not None and not re.fullmatch(r"cpu|mps|cuda(:\d+)?", self.device):
            raise InputError(f"unknown --device '{self.device}': use cpu, cuda, cuda:N or mps")


def check_before_load(req: RunRequest, loaded: LoadedModel | None = None) -> None:
    """Every limit that needs the model, checked with its tokenizer and config only (no weights).
    ``loaded`` if given, else the model registered in memory under ``req.model`` (backend.engine.provider:
    such a name need not resolve on disk), else the model's config and tokenizer read from disk."""
    if loaded is None:
        from backend.engine import provider

        loaded = provider.registered(req.model)
    if loaded is not None:
        from backend.engine.architecture import locate

        limits.check_proxy_layers(req.proxy_layers, locate(loaded.model).n_layers)
        tokenizer, max_context = loaded.tokenizer, loaded.max_context
    else:
        spec = resolve(req.model)
        shape = read_shape(spec)  # config.json or the GGUF header: no tokenizer, no weights
        limits.check_proxy_layers(req.proxy_layers, shape.n_layers)  # before the tokenizer (seconds)
        # a plain tokenizer.json counts without transformers and torch; else the full tokenizer
        tokenizer = load_token_counter(spec, req.trust_remote_code) or load_tokenizer(spec, req.trust_remote_code)
        max_context = shape.max_context
    limits.check_before_load(
        tokenizer,
        question=req.question.strip(),
        answer=req.answer,
        trajectory=req.trajectory,
        template=req.template,
        max_new_tokens=req.generation.max_new_tokens,
        truncate=req.truncate,
        max_context=max_context,
        limits=limits.Limits(req.max_answer_tokens, req.max_question_tokens),
    )
