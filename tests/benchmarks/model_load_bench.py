"""Model load: GGUF conversion (what every process paid before) vs the converted-model cache.

    python tests/benchmarks/model_load_bench.py [--model smollm2-135m] [--repeats 3]

Measured side by side in one process, each load uncached in memory (``_load_uncached``):
1. the GGUF de-quantized with the converted cache switched off (the old path);
2. the first load with the cache on (conversion + writing safetensors/config/tokenizer);
3. later loads reading the converted copy (median of ``--repeats``).
Also checks that both copies give the same logits and token ids. Prints JSON as its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import common  # noqa: F401  (puts the repository on sys.path)


def _timed_load(spec, env_value: str) -> tuple[float, object]:
    from backend.engine import models

    os.environ["RAML_MODEL_CACHE"] = env_value
    t0 = time.perf_counter()
    loaded = models._load_uncached(spec, False, "cpu", None)
    return time.perf_counter() - t0, loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import statistics

    import torch

    from backend.engine.models import resolve

    spec = resolve(args.model)
    with tempfile.TemporaryDirectory() as root:
        gguf_s, from_gguf = _timed_load(spec, "")
        first_s, _ = _timed_load(spec, root)
        converted = []
        for _ in range(max(1, args.repeats)):
            seconds, from_cache = _timed_load(spec, root)
            converted.append(seconds)
        text = "Maya has 5 apples. Wait, 2 * 4 = 8, so she has 13 - 6 - 1 = 6."
        ids_gguf = from_gguf.tokenizer(text)["input_ids"]
        ids_conv = from_cache.tokenizer(text)["input_ids"]
        with torch.inference_mode():
            batch = torch.tensor([ids_gguf])
            diff = (from_gguf.model(batch).logits - from_cache.model(batch).logits).abs().max().item()
        size_mb = sum(p.stat().st_size for p in os.scandir(next(os.scandir(root)).path)) / 1e6
    median = statistics.median(converted)
    print(
        json.dumps(
            {
                "model": spec.name,
                "gguf_conversion_s": round(gguf_s, 2),
                "first_load_with_store_s": round(first_s, 2),
                "converted_load_s": round(median, 2),
                "converted_load_all_s": [round(s, 2) for s in converted],
                "speedup": round(gguf_s / median, 1),
                "same_token_ids": ids_gguf == ids_conv,
                "max_abs_logit_diff": diff,
                "fingerprint_unchanged": from_gguf.fingerprint == from_cache.fingerprint,
                "converted_size_mb": round(size_mb, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
