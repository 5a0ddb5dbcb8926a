"""The run schema is pinned: every file, column, meta field and tensor name a cache holds.
Changing one of these orphans existing caches, so a change here must be deliberate (with a new
``SCHEMA_VERSION``). Also: nothing outside ``backend/store`` spells those names raw."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backend.store import schema

ROOT = Path(__file__).resolve().parents[2]


def test_file_and_folder_names_are_pinned():
    assert schema.SCHEMA_VERSION == 1
    assert (schema.RUNS_DIR, schema.TMP_DIR, schema.LOCKS_DIR, schema.INDEX_FILE) == (
        "runs",
        "tmp",
        "locks",
        "index.sqlite",
    )
    assert (schema.DERIVED_DIR, schema.AGGREGATES_DIR, schema.LOCK_SUFFIX) == ("derived", "aggregates", ".lock")
    assert schema.META_FILE == "meta.json"
    assert (schema.LENSES_DIR, schema.TUNED_LENS_DIR, schema.LENS_PARAMS_FILE, schema.LENS_CONFIG_FILE) == (
        "lenses",
        "tuned",
        "params.safetensors",
        "config.json",
    )
    assert schema.RUN_FILES == ("tokens.parquet", "steps.parquet", "lens.parquet", "tensors.safetensors")
    assert (schema.FILE_MODE, schema.DIR_MODE) == (0o644, 0o755)


def test_columns_are_pinned():
    assert schema.TOKEN_COLUMNS == (
        "cut", "progress", "loss", "p_answer", "rank", "entropy", "token", "step", "after_answer_seen", "reflection",
    )  # fmt: skip
    assert schema.STEP_COLUMNS == (
        "index", "start", "end", "text", "loss", "loss_before", "p_answer", "rank", "entropy", "reflection",
        "reflection_words", "delta_loss",
    )  # fmt: skip
    assert schema.LENS_COLUMNS == ("boundary", "cut", "layer", "nll", "p_answer", "top_tokens", "top_probs")
    assert schema.INDEX_COLUMNS == (
        "key", "question", "model", "answer", "answer_source", "correct", "n_tokens", "n_steps", "final_loss",
        "initial_loss", "created", "label", "predicted_answer", "grader", "parent", "branch_at",
    )  # fmt: skip
    assert schema.STATUS_COLUMNS == ("status", "cause")
    assert (schema.STATUS_OK, schema.STATUS_DAMAGED) == ("ok", "damaged")


def test_meta_fields_are_pinned():
    assert schema.all_meta_fields() == {
        "Meta": (
            "key", "schema_version", "created", "checksums", "sizes", "question", "answer", "answer_source", "label",
            "model", "prompt", "trajectory", "template", "segmentation", "cuts", "generation", "proxy_layers",
            "answer_ids", "first_answer_cut", "truncated_tokens", "reflections", "timings", "summary",
            "analysis_version", "response", "trajectory_source", "think_format", "predicted_answer", "correct",
            "grader", "segmenter_version", "generator", "parent", "branch_at", "branch", "warnings", "compute",
            "origin", "cut_policy",
        ),
        "ModelMeta": ("name", "fingerprint", "class", "n_layers", "d_model", "vocab_size", "dtype", "device"),
        "SummaryMeta": ("n_tokens", "n_steps", "n_cuts", "initial_loss", "final_loss"),
    }  # fmt: skip
    assert {k: v.__name__ for k, v in schema.REQUIRED_META.items()} == {
        "question": "str", "answer": "str", "answer_source": "str", "model": "dict", "summary": "dict",
    }  # fmt: skip


def test_tensor_names_are_pinned_and_round_trip():
    assert schema.TENSOR_KINDS == ("hidden", "boundary_cuts", "proxy_input", "proxy_preact")
    assert schema.tensor_name(schema.HIDDEN) == "hidden"
    assert schema.tensor_name(schema.BOUNDARY_CUTS) == "boundary_cuts"
    assert schema.tensor_name(schema.PROXY_INPUT, 3) == "proxy_input.3"
    assert schema.tensor_name(schema.PROXY_PREACT, 29) == "proxy_preact.29"
    for kind, layer in [("hidden", None), ("boundary_cuts", None), ("proxy_input", 0), ("proxy_preact", 117)]:
        assert schema.parse_tensor_name(schema.tensor_name(kind, layer)) == (kind, layer)
    assert schema.layers_of(
        ["hidden", "proxy_input.7", "proxy_input.2", "proxy_preact.2", "junk.1"], "proxy_input"
    ) == [
        2,
        7,
    ]


@pytest.mark.parametrize(
    "kind, layer", [("proxy_input", None), ("proxy_input", -1), ("proxy_preact", True), ("hidden", 2), ("weights", 0)]
)
def test_tensor_name_refuses_what_the_schema_does_not_store(kind, layer):
    with pytest.raises(ValueError):
        schema.tensor_name(kind, layer)


@pytest.mark.parametrize(
    "name", ["hidden.3", "proxy_input", "proxy_input.03", "proxy_preact.x", "weights.1", "", "a b"]
)
def test_parse_tensor_name_refuses_names_it_would_not_write(name):
    with pytest.raises(ValueError, match="not a stored tensor name"):
        schema.parse_tensor_name(name)


def test_a_real_run_is_written_exactly_in_the_schema(tiny_run):
    """The writer (backend.pipeline.run) and the schema agree: columns, meta fields and tensor names."""
    store, key = tiny_run
    run = store.open(key)
    assert tuple(run.tokens.columns) == schema.TOKEN_COLUMNS
    assert tuple(run.steps.columns) == schema.STEP_COLUMNS
    assert tuple(run.lens.columns) == schema.LENS_COLUMNS
    fields = schema.all_meta_fields()
    assert set(run.meta) == set(fields["Meta"]) - set(schema.BRANCH_FIELDS)  # an ordinary run, not a branch
    assert set(run.meta["model"]) == set(fields["ModelMeta"])
    assert set(run.meta["summary"]) == set(fields["SummaryMeta"])
    names = run.tensor_names()
    parsed = [schema.parse_tensor_name(n) for n in names]
    layers = run.meta["proxy_layers"]
    assert sorted(parsed, key=str) == sorted(
        [("hidden", None), ("boundary_cuts", None)] + [(k, i) for k in ("proxy_input", "proxy_preact") for i in layers],
        key=str,
    )
    assert run.proxy_layers == layers and run.layers_available("proxy") == layers
    assert run.layers_available("hidden") == list(range(run.meta["model"]["n_layers"]))
    # typed accessors read the same values as the raw meta
    s = run.summary
    assert (s.n_tokens, s.n_steps, s.final_loss) == (
        run.meta["summary"]["n_tokens"],
        run.meta["summary"]["n_steps"],
        run.meta["summary"]["final_loss"],
    )
    assert (run.model_name, run.model_fingerprint, run.question, run.answer) == (
        run.meta["model"]["name"],
        run.meta["model"]["fingerprint"],
        run.meta["question"],
        run.meta["answer"],
    )
    assert run.settings["segmentation"] == run.meta["segmentation"] and run.timings == run.meta["timings"]


RAW_META = re.compile(r"""\.meta\[|\.meta\.get\(|\bmeta\[["']|["']proxy_(input|preact)\.|["']meta\.json["']""")


def test_no_code_outside_the_store_spells_schema_names_raw():
    offenders = []
    for folder in ("backend", "app"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.is_relative_to(ROOT / "backend" / "store"):
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if RAW_META.search(line) and not line.lstrip().startswith(("#", "with the cut points")):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
