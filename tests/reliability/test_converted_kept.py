"""Issue 27 item 7: a healthy converted model is never deleted because a load failed for
another reason (a server shutting down mid-load: "cannot schedule new futures after interpreter
shutdown"); only a copy that fails its own integrity check is removed and converted again."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from backend.engine import converted, models
from backend.errors import ModelLoadError


@pytest.fixture
def copy(tmp_path):
    """A converted copy's files: marker, config, tokenizer and real safetensors weights."""
    folder = tmp_path / "models" / "abcdef12-float32"
    folder.mkdir(parents=True)
    (folder / converted.MARKER).write_text(json.dumps({"fingerprint": "abcdef12", "dtype": "float32"}))
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer.json").write_text("{}")
    save_file({"w": np.ones((64, 64), np.float32), "b": np.zeros(64, np.float32)}, str(folder / "model.safetensors"))
    return folder


def _shutdown_mid_load(*_args, **_kwargs):
    raise ModelLoadError("cannot load the model: RuntimeError: cannot schedule new futures after interpreter shutdown")


def test_a_sound_copy_is_kept_when_its_load_fails_for_another_reason(copy, monkeypatch):
    before = {p.name: p.stat().st_size for p in copy.iterdir()}
    assert converted.check(copy) is None
    monkeypatch.setattr(models, "_from_pretrained", _shutdown_mid_load)
    with pytest.raises(ModelLoadError, match="interpreter shutdown"):
        models._load_converted(None, copy, {}, None, "abcdef12")
    assert {p.name: p.stat().st_size for p in copy.iterdir()} == before  # nothing deleted


@pytest.mark.parametrize(
    "damage",
    ["truncate", "pad", "marker", "no-tokenizer"],
)
def test_a_copy_that_fails_its_own_check_is_removed_for_a_new_conversion(copy, monkeypatch, damage):
    weights = copy / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "pad":
        weights.write_bytes(weights.read_bytes() + b"\0" * 10)
    elif damage == "marker":
        (copy / converted.MARKER).write_text("{not json")
    else:
        (copy / "tokenizer.json").unlink()
    assert converted.check(copy) is not None
    monkeypatch.setattr(models, "_from_pretrained", _shutdown_mid_load)
    assert models._load_converted(None, copy, {}, None, "abcdef12") is None  # the caller converts the GGUF again
    assert not copy.exists()


def test_sigterm_during_a_load_in_a_subprocess_keeps_the_copy(copy):
    """A server process gets SIGTERM while a thread loads the converted copy: the interpreter
    shuts down under the load, which then fails the way transformers' does ("cannot schedule
    new futures after interpreter shutdown"; the stand-in loader raises it once the real
    shutdown has begun). The copy is sound, so it is kept."""
    import signal
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = textwrap.dedent(
        f"""
        import signal, sys, threading, time
        sys.path.insert(0, {str(root)!r})
        from pathlib import Path
        import concurrent.futures.thread as pool
        from backend.engine import models
        from backend.errors import ModelLoadError

        def loader(*_args, **_kwargs):
            print("loading", flush=True)
            while not pool._shutdown:  # set by the interpreter's own shutdown, after SIGTERM
                time.sleep(0.01)
            raise ModelLoadError("cannot load: RuntimeError: cannot schedule new futures after interpreter shutdown")

        models._from_pretrained = loader
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a server stops on SIGTERM like this

        def load():
            try:
                models._load_converted(None, Path({str(copy)!r}), {{}}, None, "abcdef12")
            except ModelLoadError as exc:
                print("load failed:", exc, flush=True)

        threading.Thread(target=load).start()
        while True:
            time.sleep(0.05)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "loading"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert "load failed" in out and "interpreter shutdown" in out, (out, err)
    assert converted.check(copy) is None and (copy / "model.safetensors").is_file()  # the copy is kept
