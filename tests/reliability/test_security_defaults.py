"""Issue 7, security defaults: the app binds to localhost with XSRF protection on, no code in
backend/ or app/ unpickles, evals or shells out with user data, model weights load from
safetensors/GGUF only, and remote code stays off unless asked for.
"""

from __future__ import annotations

import ast
import json
import pickle
import re

import pytest
from _reliability_support import ROOT, save_tiny_model

SCANNED_DIRS = ("backend", "app")
BANNED_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
BANNED_BUILTINS = {"eval", "exec", "compile", "__import__"}
BANNED_CALLS = {  # dotted name -> why
    "torch.load": "unpickles",
    "pd.read_pickle": "unpickles",
    "pandas.read_pickle": "unpickles",
    "os.system": "runs a shell",
    "os.popen": "runs a shell",
    "yaml.load": "can build objects (use safe_load)",
    "yaml.unsafe_load": "can build objects",
}
BANNED_KEYWORDS = {  # keyword=True on any call
    "shell": "runs a shell",
    "allow_pickle": "unpickles",
    "trust_remote_code": "runs a model repo's code",
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def unsafe_constructs(source: str, filename: str = "<string>") -> list[str]:
    """Every banned import, call and keyword in ``source``, as ``file:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in BANNED_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in BANNED_MODULES:
            found.append(f"{where}: from {node.module} import")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in BANNED_BUILTINS:
                found.append(f"{where}: {name}()")
            if name in BANNED_CALLS or name.endswith((".torch.load", ".read_pickle")):
                found.append(f"{where}: {name}() {BANNED_CALLS.get(name, 'unpickles')}")
            for kw in node.keywords:
                if kw.arg in BANNED_KEYWORDS and isinstance(kw.value, ast.Constant) and kw.value.value is True:
                    found.append(f"{where}: {kw.arg}=True {BANNED_KEYWORDS[kw.arg]}")
                if kw.arg == "weights_only" and isinstance(kw.value, ast.Constant) and kw.value.value is False:
                    found.append(f"{where}: weights_only=False unpickles")
    return found


def _python_files():
    for folder in SCANNED_DIRS:
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_the_scanner_finds_what_it_looks_for():
    bad = (
        "import pickle\nfrom dill import loads\nimport torch, yaml, subprocess, os\n"
        "x = eval(s)\nexec(code)\ntorch.load(path)\nsubprocess.run(cmd, shell=True)\nos.system(cmd)\n"
        "np.load(f, allow_pickle=True)\nAutoModel.from_pretrained(p, trust_remote_code=True)\n"
        "torch.load(p, weights_only=False)\nyaml.load(text)\ndf = pd.read_pickle(p)\n"
    )
    found = unsafe_constructs(bad)
    assert len(found) == 13, found
    fine = (
        "model.eval()\nnp.load(f, allow_pickle=False)\nsubprocess.run(['ls', d])\n"
        "load_model(name, trust_remote_code=args.trust_remote_code)\n"
        "msg = 'pickle weights are refused'\n"
    )
    assert unsafe_constructs(fine) == []


def test_no_pickle_eval_exec_or_shell_in_backend_and_app():
    files = list(_python_files())
    assert len(files) >= 10  # the scan really covers the code
    found = [hit for path in files for hit in unsafe_constructs(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == []


def test_no_torch_load_or_shell_true_even_in_text():
    """The issue's grep, as a second net beside the AST walk (comments ignored)."""
    pattern = re.compile(r"torch\.load\(|shell\s*=\s*True|read_pickle\(|pickle\.loads?\(|allow_pickle\s*=\s*True")
    hits = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in _python_files()
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line.split("#")[0])
    ]
    assert hits == []


def test_make_run_binds_localhost_only():
    makefile = (ROOT / "Makefile").read_text()
    launches = [ln for ln in makefile.splitlines() if "streamlit run" in ln]
    assert launches, "no streamlit launch in the Makefile"
    for line in launches:
        assert re.search(r"--server\.address[ =]127\.0\.0\.1\b", line), line
        assert "enableXsrfProtection" not in line and "enableCORS" not in line, line
    assert "0.0.0.0" not in makefile


def test_streamlit_config_keeps_xsrf_and_localhost():
    config_path = ROOT / ".streamlit" / "config.toml"
    if not config_path.exists():
        pytest.skip("no .streamlit/config.toml yet (Streamlit's defaults keep XSRF protection on)")
    import tomllib

    server = tomllib.loads(config_path.read_text()).get("server", {})
    assert server.get("enableXsrfProtection", True) is True
    assert server.get("address", "127.0.0.1") in ("127.0.0.1", "localhost")
    assert 0 < server.get("maxUploadSize", 200) <= 200


class _Payload:
    """Unpickling this creates a file: proof that a checkpoint was (not) unpickled."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_safetensors_win_over_a_pickle_beside_them(tmp_path, smol_tokenizer):
    """A folder with model.safetensors and a booby-trapped pytorch_model.bin loads the
    safetensors and never opens the pickle."""
    from backend.engine.models import load_model

    model_dir = save_tiny_model(tmp_path / "model", smol_tokenizer, max_positions=512, seed=2)
    marker = tmp_path / "PAYLOAD_RAN"
    (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(str(marker))))
    loaded = load_model(str(model_dir))
    assert loaded.model.config.max_position_embeddings == 512
    assert not marker.exists()


def test_remote_code_in_the_tokenizer_config_is_refused_too(tmp_path, smol_tokenizer):
    from backend.engine.models import load_model
    from backend.errors import ModelLoadError

    model_dir = save_tiny_model(tmp_path / "model", smol_tokenizer, max_positions=512, seed=3)
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"auto_map in tokenizer_config\.json.*--trust-remote-code"):
        load_model(str(model_dir))


def test_cache_holds_only_json_parquet_and_safetensors(tiny_run):
    """No pickle anywhere in a run: its own files, numpy archives of derived views (projections,
    surfaces; loaded with ``allow_pickle=False``), JSON, and exported figures (PNG/SVG) in exports/."""
    from backend.store.schema import EXPORTS_DIR

    store, key = tiny_run
    names = sorted(p.name for p in store.path(key).iterdir() if p.name != "derived")
    assert names == ["lens.parquet", "meta.json", "steps.parquet", "tensors.safetensors", "tokens.parquet"]
    derived = store.path(key) / "derived"
    if derived.exists():
        for p in derived.rglob("*"):
            if p.is_dir():
                assert p.name == EXPORTS_DIR and p.parent == derived, p
            elif p.parent.name == EXPORTS_DIR:
                assert p.suffix in (".png", ".svg"), p
            else:
                assert p.suffix in (".npz", ".json"), p


def test_security_md_states_the_threat_model():
    text = (ROOT / "SECURITY.md").read_text().lower()
    for must in ("127.0.0.1", "reverse proxy", "trust-remote-code", "pickle", "safetensors", "run key"):
        assert must in text, must
