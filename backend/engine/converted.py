"""Converted-model cache: a GGUF is de-quantized once and stored as safetensors + config +
tokenizer files, keyed by the GGUF's fingerprint; later loads read those files (seconds
instead of a full GGUF conversion).

Layout: ``<cache root>/models/<fingerprint>/`` with ``config.json``, ``model.safetensors``,
the tokenizer files and ``converted.json`` (source file, fingerprint, dtype). The folder is
written to a temp directory beside it and renamed into place, so a crash never leaves a
half-written conversion. The run keys still use the GGUF's own fingerprint
(``ModelSpec.fingerprint``), so converting changes no cache address.

Two processes that need the same conversion at once (the app's worker and a CLI batch, two test
workers) take turns through a lock file beside the folder (``conversion_lock``): the second waits
and then reads the copy the first stored, instead of de-quantizing a second time.

The cache root is ``RAML_MODEL_CACHE`` if set (an empty value turns the cache off), else
``$RAML_CACHE_DIR/models`` (default ``cache/models``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = "converted.json"
_FINGERPRINT = re.compile(r"^[0-9a-f]{8,64}$")


def converted_root() -> Path | None:
    """Where converted models live, or None when the cache is switched off."""
    explicit = os.environ.get("RAML_MODEL_CACHE")
    if explicit is not None:
        return Path(explicit).expanduser() if explicit.strip() else None
    return Path(os.environ.get("RAML_CACHE_DIR", "cache")).expanduser() / "models"


def converted_dir(fingerprint: str, dtype_name: str, root: Path | None = None) -> Path | None:
    """Folder of the converted weights for a GGUF fingerprint and dtype (None: cache off)."""
    root = root if root is not None else converted_root()
    if root is None or not _FINGERPRINT.match(fingerprint):
        return None
    return root / f"{fingerprint}-{dtype_name}"


def is_complete(path: Path | None) -> bool:
    """A finished conversion: the marker is written last, inside the renamed folder."""
    return path is not None and (path / MARKER).is_file() and (path / "config.json").is_file()


def check(path: Path) -> str | None:
    """The converted copy's own integrity check: why it is damaged, or None if it is sound.

    Reads only what is cheap: the marker and ``config.json`` parse, the marker names this
    fingerprint, a tokenizer is there, and every ``*.safetensors`` file's header parses and
    accounts for the file's size exactly (a truncated or padded file fails). A load that fails
    for any other reason (an interpreter shutting down, memory) says nothing against the copy."""
    try:
        marker = json.loads((path / MARKER).read_text())
        json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        return f"{MARKER} or config.json unreadable ({type(exc).__name__})"
    if not isinstance(marker, dict) or not path.name.startswith(str(marker.get("fingerprint", "?"))):
        return f"{MARKER} names another model"
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer.model")):
        return "no tokenizer file"
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        return "no safetensors weights"
    for file in weights:
        problem = _safetensors_problem(file)
        if problem:
            return f"{file.name}: {problem}"
    return None


def _safetensors_problem(file: Path) -> str | None:
    """Why a safetensors file is not whole: header length, header JSON, data extent vs size."""
    try:
        size = file.stat().st_size
        with file.open("rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if n <= 0 or 8 + n > size or n > 100 << 20:
                return "header length is wrong"
            header = json.loads(fh.read(n))
    except (OSError, ValueError) as exc:
        return f"header unreadable ({type(exc).__name__})"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if 8 + n + max(ends, default=0) != size:
        return f"holds {size} bytes, its header describes {8 + n + max(ends, default=0)} (truncated or padded)"
    return None


LOCK_WAIT_S = 900.0  # longer than any conversion seen (98 s under heavy load); then go on alone


@contextlib.contextmanager
def conversion_lock(path: Path | None, timeout: float = LOCK_WAIT_S):
    """Hold ``<path>.lock`` (one converting process per GGUF and dtype) while checking for the copy
    and making it. Where no lock can be had (read-only cache, or ``timeout`` passed) the load goes
    on unlocked: ``store_converted``'s rename is atomic, so the worst case is converting twice."""
    if path is None:
        yield
        return
    from filelock import FileLock, Timeout

    lock = FileLock(str(path) + ".lock", timeout=timeout)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except (OSError, Timeout) as exc:
        log.info("converting %s without the lock (%s)", path.name, exc)
        yield
        return
    try:
        yield
    finally:
        lock.release()


TOKENIZER_SUFFIX = "tokenizer"  # <fingerprint>-tokenizer/: the tokenizer alone, before any weights were converted


def tokenizer_dir(fingerprint: str, root: Path | None = None) -> Path | None:
    """Where the converted tokenizer of a GGUF is read from, or None when there is none yet: a
    complete converted model of any dtype (its tokenizer files), else the tokenizer-only copy
    that ``store_tokenizer`` wrote when a limit was checked before the first load."""
    root = root if root is not None else converted_root()
    if root is None or not _FINGERPRINT.match(fingerprint):
        return None
    alone = root / f"{fingerprint}-{TOKENIZER_SUFFIX}"
    candidates = sorted(p for p in root.glob(f"{fingerprint}-*") if p != alone) + [alone]
    for path in candidates:
        if (path / MARKER).is_file() and (path / "tokenizer_config.json").is_file():
            return path
    return None


def store_tokenizer(fingerprint: str, tokenizer, source: Path, root: Path | None = None) -> bool:
    """Keep a tokenizer converted from a GGUF beside the converted models (atomic, like them), so
    the next check before load reads ``tokenizer.json`` in a second instead of converting the
    GGUF's vocabulary again (tens of seconds). False (logged) if it cannot be written."""
    root = root if root is not None else converted_root()
    if root is None or not _FINGERPRINT.match(fingerprint):
        return False
    path = root / f"{fingerprint}-{TOKENIZER_SUFFIX}"
    tmp: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=root))
        tokenizer.save_pretrained(tmp)
        info = {"source": source.name, "fingerprint": fingerprint, "tokenizer_only": True, "created": time.time()}
        (tmp / MARKER).write_text(json.dumps(info, indent=1))
        try:
            tmp.rename(path)
        except OSError:
            if not (path / MARKER).is_file():
                raise
        return True
    except Exception as exc:  # a cache only: never fail the check that already has its tokenizer
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
        log.warning("could not store the converted tokenizer in %s: %s", path, str(reason)[:200])
        return False
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def store_converted(path: Path, model, tokenizer, source: Path, fingerprint: str) -> bool:
    """Write ``model`` + ``tokenizer`` to ``path`` atomically; False (logged) if it cannot.

    A failure here (read-only or full disk) never fails the load: the model is in memory.
    """
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        _save_dequantized(model, tmp)
        tokenizer.save_pretrained(tmp)
        info = {
            "source": source.name,
            "fingerprint": fingerprint,
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "created": time.time(),
        }
        (tmp / MARKER).write_text(json.dumps(info, indent=1))
        try:
            tmp.rename(path)
        except OSError:
            if not is_complete(path):  # another process won the race with a complete copy
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        tmp = None
        return True
    except Exception as exc:  # never fail a load that already succeeded in memory
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
        log.warning("could not store the converted model in %s: %s", path, str(reason)[:200])
        return False
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _save_dequantized(model, directory: Path) -> None:
    """``save_pretrained`` of a GGUF-loaded model: its tensors are already de-quantized to the
    load dtype, but transformers keeps the GGUF quantizer attached and refuses to serialize;
    it is detached for the save (and the ``quantization_config`` kept out of config.json)."""
    quantizer = model.__dict__.get("hf_quantizer", None)
    had_qconf = "quantization_config" in model.config.__dict__
    qconf = model.config.__dict__.get("quantization_config")
    try:
        model.hf_quantizer = None
        if had_qconf:
            del model.config.quantization_config
        model.save_pretrained(directory, safe_serialization=True)
    finally:
        model.hf_quantizer = quantizer
        if had_qconf:
            model.config.quantization_config = qconf
