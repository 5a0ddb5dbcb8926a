"""Run keys are the cache's addresses: a refactor must not change them, or every existing
cache entry silently becomes unreachable. These values were computed by the flat-layout
code (commit 7b65ddb) before the domain split; they must never change without a new
analysis version."""

from backend.engine.models import resolve
from backend.pipeline.run import RunRequest, _run_key, request_key

PINNED_SMOLLM2_FINGERPRINT = "2f78640916036c4d"


def test_embedded_model_fingerprint_is_unchanged():
    assert resolve("smollm2-135m").fingerprint() == PINNED_SMOLLM2_FINGERPRINT


def test_request_and_run_keys_are_unchanged():
    req = RunRequest(question="Tom has 3 red and 4 blue balls. How many balls?", answer="7")
    assert request_key(req, PINNED_SMOLLM2_FINGERPRINT) == "fad420d3bf99d1478473947ae5878a88"
    run_key = _run_key(req, PINNED_SMOLLM2_FINGERPRINT, "{{ chat }}", "Three plus four is seven.", "7")
    assert run_key == "78939ffbbe520545e5fcc7e974b0d027"
    imported = RunRequest(
        question="Q?", answer=None, trajectory="t", segmentation="lines", cuts="stride:4", proxy_layers=[0, 3]
    )
    assert request_key(imported, "abc") == "b49b3fbd06d06fabe92de58ae761231b"
