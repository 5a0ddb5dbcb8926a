"""Interop with tuned-lens itself (docs/lens.md): a lens saved by ``tuned_lens.TunedLens.save`` is
imported here without unpickling and reads out exactly what tuned-lens reads; a lens exported here
loads in tuned-lens and reads out the same. Needs a second Python with ``tuned-lens==0.2.0``:

    python3 -m venv /tmp/tl && /tmp/tl/bin/pip install --find-links /opt/wheels torch==2.13.0 tuned-lens==0.2.0
    python tests/benchmarks/lens_interop.py --tuned-lens-python /tmp/tl/bin/python

Tiny random Llama (saved to a temporary folder, loaded by both sides). Last stdout line: JSON
{"import_max_abs_diff", "export_max_abs_diff", "layers"} (logits, float32).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import common  # noqa: F401  (repository on sys.path)

THEIRS = r"""
import json, sys, numpy as np, torch
from transformers import AutoModelForCausalLM
from tuned_lens.nn.lenses import TunedLens
model_dir, out, mode = sys.argv[1:4]
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
h = torch.from_numpy(np.load(out + "/h.npy"))
if mode == "save":
    lens = TunedLens.from_model(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in lens.layer_translators:
            t.weight.copy_(torch.randn(t.weight.shape, generator=g) * 0.05)
            t.bias.copy_(torch.randn(t.bias.shape, generator=g) * 0.05)
    lens.save(out + "/theirs")
else:
    lens = TunedLens.from_model_and_pretrained(model, out + "/ours")
with torch.no_grad():
    logits = np.stack([lens(h, idx=i).numpy() for i in range(len(lens))])
np.save(out + f"/logits_{mode}.npy", logits)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tuned-lens-python", required=True)
    args = ap.parse_args()

    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from backend.analysis.lens.reference import export_reference, import_reference
    from backend.analysis.lens.use import tuned_lens_for
    from backend.engine.models import LoadedModel

    tmp = Path(tempfile.mkdtemp(prefix="lens_interop_"))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(tmp / "model")
    loaded = LoadedModel.from_objects("interop-tiny", model, None)
    h = torch.randn(2, 5, 32)
    np.save(tmp / "h.npy", h.numpy())
    script = tmp / "theirs.py"
    script.write_text(THEIRS)
    subprocess.run([args.tuned_lens_python, str(script), str(tmp / "model"), str(tmp), "save"], check=True)
    cache = tmp / "cache"
    import_reference(cache, loaded, tmp / "theirs")
    ours = tuned_lens_for(cache, loaded)
    theirs = np.load(tmp / "logits_save.npy")  # [L translators, ...]: index i acts on hidden_states[i]
    L = config.num_hidden_layers
    with torch.no_grad():
        mine = np.stack([ours(h, layer).numpy() for layer in range(L - 1)])  # our layer ℓ = their index ℓ + 1
    import_diff = float(np.abs(mine - theirs[1:L]).max())
    export_reference(cache, loaded, tmp / "ours")
    subprocess.run([args.tuned_lens_python, str(script), str(tmp / "model"), str(tmp), "load"], check=True)
    back = np.load(tmp / "logits_load.npy")
    export_diff = float(np.abs(back - theirs).max())
    print(json.dumps({"import_max_abs_diff": import_diff, "export_max_abs_diff": export_diff, "layers": L}))


if __name__ == "__main__":
    main()
