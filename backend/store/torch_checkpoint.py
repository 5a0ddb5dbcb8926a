"""Tensors from a ``torch.save`` file without unpickling it (docs/lens.md: tuned-lens' ``params.pt``).

A ``torch.save`` file is a zip: ``<name>/data.pkl`` (a pickle program that rebuilds the object) and
``<name>/data/<key>`` (the raw bytes of each storage). ``torch.load`` — ``weights_only=True``
included — *runs* that program through an unpickler; the restricted one has had its own
remote-code-execution bugs (CVE-2025-32434), so this tool never does. Instead this module walks the
program's opcodes with ``pickletools.genops`` (which decodes, never executes) on a tiny stack machine
that knows only what a state dict of plain tensors needs: dicts, tuples, strings, numbers, and the
three globals ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and
``torch.<Type>Storage``. Any other opcode or global is refused by name, so nothing is imported or
called; the tensors are numpy views over the storage bytes (shape, stride and offset checked
against the storage's size).
"""

from __future__ import annotations

import pickletools
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "BoolStorage": np.bool_,
}  # bfloat16 has no numpy dtype: refused by name
_ALLOWED_GLOBALS = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2")}


class CheckpointError(ValueError):
    """A file this reader does not accept (one line naming the file and why)."""


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


@dataclass(frozen=True)
class _Storage:
    dtype: type
    key: str
    numel: int


@dataclass(frozen=True)
class _Tensor:
    storage: _Storage
    offset: int
    shape: tuple
    stride: tuple


_MARK = object()


def _global(module: str, name: str, where: str) -> _Global:
    if (module, name) in _ALLOWED_GLOBALS or (module == "torch" and name in STORAGE_DTYPES):
        return _Global(module, name)
    raise CheckpointError(f"{where}: refers to {module}.{name}, which a file of plain tensors never does; not read")


def _call(fn, args, where: str):
    if not isinstance(fn, _Global):
        raise CheckpointError(f"{where}: calls something that is not an allowed global; not read")
    if (fn.module, fn.name) == ("collections", "OrderedDict"):
        return {}
    if fn.name == "_rebuild_tensor_v2":
        storage, offset, shape, stride = args[:4]
        if not isinstance(storage, _Storage) or not isinstance(shape, tuple) or not isinstance(stride, tuple):
            raise CheckpointError(f"{where}: a tensor record of an unexpected form; not read")
        return _Tensor(storage, int(offset), tuple(int(s) for s in shape), tuple(int(s) for s in stride))
    raise CheckpointError(f"{where}: calls {fn.module}.{fn.name}; not read")


def _run(program: bytes, where: str):
    stack: list = []
    memo: dict = {}

    def pop_mark() -> list:
        i = len(stack) - 1
        while stack[i] is not _MARK:
            i -= 1
        items = stack[i + 1 :]
        del stack[i:]
        return items

    for op, arg, _pos in pickletools.genops(program):
        name = op.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            return stack[-1]
        if name == "MARK":
            stack.append(_MARK)
        elif name in ("BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8"):
            stack.append(str(arg))
        elif name in ("BININT", "BININT1", "BININT2", "LONG1", "INT", "LONG"):
            stack.append(int(arg))  # type: ignore[arg-type]  # these opcodes always carry a number
        elif name == "BINFLOAT":
            stack.append(float(arg))  # type: ignore[arg-type]
        elif name in ("NEWTRUE", "NEWFALSE", "NONE"):
            stack.append({"NEWTRUE": True, "NEWFALSE": False, "NONE": None}[name])
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            members = tuple(stack[-n:])
            del stack[-n:]
            stack.append(members)
        elif name == "TUPLE":
            stack.append(tuple(pop_mark()))
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name in ("APPENDS", "APPEND"):
            items = pop_mark() if name == "APPENDS" else [stack.pop()]
            stack[-1].extend(items)
        elif name in ("SETITEMS", "SETITEM"):
            items = pop_mark() if name == "SETITEMS" else stack[-2:]
            if name == "SETITEM":
                del stack[-2:]
            target = stack[-1]
            if not isinstance(target, dict):
                raise CheckpointError(f"{where}: sets items on something that is not a dict; not read")
            for k, v in zip(items[::2], items[1::2]):
                target[k] = v
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(memo[arg])
        elif name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            stack.append(_global(module, attr, where))
        elif name == "STACK_GLOBAL":
            attr, module = stack.pop(), stack.pop()
            stack.append(_global(str(module), str(attr), where))
        elif name == "REDUCE":
            args, fn = stack.pop(), stack.pop()
            stack.append(_call(fn, args, where))
        elif name == "BUILD":
            stack.pop()  # the state of an OrderedDict (its ``_metadata``): not needed
        elif name == "BINPERSID":
            pid = stack.pop()
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Global)):
                raise CheckpointError(f"{where}: a storage record of an unexpected form; not read")
            if pid[1].name not in STORAGE_DTYPES:
                raise CheckpointError(f"{where}: storage type {pid[1].name} is not supported")
            stack.append(_Storage(STORAGE_DTYPES[pid[1].name], str(pid[2]), int(pid[4])))
        else:
            raise CheckpointError(f"{where}: pickle opcode {name} is not part of a file of plain tensors; not read")
    raise CheckpointError(f"{where}: the pickle program has no STOP")


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """``{name: array}`` of a ``torch.save``'d dict of tensors (zip format), never unpickled."""
    where = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{where}: not a torch zip checkpoint ({type(exc).__name__}); only torch>=1.6 files are read"
        ) from None
    with archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise CheckpointError(f"{where}: no single data.pkl inside; not a torch checkpoint")
        prefix = pkl[0][: -len("data.pkl")]
        order = archive.read(prefix + "byteorder").decode().strip() if prefix + "byteorder" in names else "little"
        if order != "little":
            raise CheckpointError(f"{where}: byte order {order!r} is not supported")
        obj = _run(archive.read(pkl[0]), where)
        if not isinstance(obj, dict):
            raise CheckpointError(f"{where}: holds a {type(obj).__name__}, not a dict of tensors")
        out = {}
        for key, tensor in obj.items():
            if not isinstance(key, str) or not isinstance(tensor, _Tensor):
                raise CheckpointError(f"{where}: entry {key!r} is not a tensor")
            storage = tensor.storage
            raw: np.ndarray = np.frombuffer(archive.read(f"{prefix}data/{storage.key}"), dtype=storage.dtype)
            if raw.size != storage.numel:
                raise CheckpointError(
                    f"{where}: storage {storage.key} holds {raw.size} values, its record says {storage.numel}"
                )
            last = (
                tensor.offset + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride))
                if all(tensor.shape)
                else -1
            )
            if tensor.offset < 0 or min(tensor.stride, default=0) < 0 or last >= raw.size:
                raise CheckpointError(f"{where}: tensor {key} reaches outside its storage")
            item = raw.itemsize
            view = np.lib.stride_tricks.as_strided(
                raw[tensor.offset :],
                shape=tensor.shape,
                strides=tuple(s * item for s in tensor.stride),
                writeable=False,
            )
            out[key] = np.array(view)  # a copy: the zip's bytes are not kept
        return out
