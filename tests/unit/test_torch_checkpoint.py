"""Reading a ``torch.save`` state dict (tuned-lens' ``params.pt``) without unpickling it
(backend/store/torch_checkpoint.py): the values come back exactly; anything but plain tensors is
refused in one line, and nothing in the file is ever run."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest
import torch

from backend.store.torch_checkpoint import CheckpointError, read_state_dict


def test_a_module_list_state_dict_reads_back_exactly(tmp_path):
    torch.manual_seed(0)
    translators = torch.nn.ModuleList(torch.nn.Linear(5, 5) for _ in range(3))  # what tuned-lens saves
    state = translators.state_dict()
    torch.save(state, tmp_path / "params.pt")
    arrays = read_state_dict(tmp_path / "params.pt")
    assert list(arrays) == list(state)
    for name, tensor in state.items():
        assert arrays[name].dtype == np.float32 and np.array_equal(arrays[name], tensor.numpy()), name


def test_views_strides_offsets_and_dtypes(tmp_path):
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    state = {"t": base.t(), "row": base[2], "half": torch.ones(3, dtype=torch.float16), "ids": torch.arange(4)}
    torch.save(state, tmp_path / "views.pt")
    arrays = read_state_dict(tmp_path / "views.pt")
    for name, tensor in state.items():
        assert arrays[name].dtype == tensor.numpy().dtype and np.array_equal(arrays[name], tensor.numpy()), name


class _Boom:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickle_that_calls_anything_else_is_refused_without_running(tmp_path, capsys):
    program = pickle.dumps({"0.weight": _Boom()}, protocol=2)
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", program)
        z.writestr("evil/byteorder", "little")
    with pytest.raises(CheckpointError, match=r"(__builtin__|builtins)\.print") as err:
        read_state_dict(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert "never run" not in capsys.readouterr().out


def test_not_a_zip_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "legacy.pt"
    buf = io.BytesIO()
    torch.save({"a": torch.zeros(2)}, buf, _use_new_zipfile_serialization=False)
    path.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="not a torch zip checkpoint") as err:
        read_state_dict(path)
    assert "\n" not in str(err.value)
