"""Checkpoints: safetensors + JSON round trips, refusals, atomic writes, no pickle."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

import xglacier
from xglacier.errors import XGlacierError
from xglacier.models import MODEL_CLASSES, ConvLSTM, Persistence
from xglacier.nn.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointNotFoundError,
    checkpoint_paths,
    load_model,
    read_metadata,
    save_model,
)


class ConvNet(nn.Module):
    """Tiny model following the interface, with a buffer and a tied (shared) weight."""

    trainable = True

    def __init__(self, patch_size=8, n_in=2, n_out=2, hidden=3):
        super().__init__()
        self.config = dict(patch_size=patch_size, n_in=n_in, n_out=n_out, hidden=hidden)
        self.patch_size, self.n_in, self.n_out = patch_size, n_in, n_out
        self.enc = nn.Conv2d(n_in, hidden, 3, padding=1)
        self.dec = nn.Conv2d(hidden, n_out, 1)
        self.dec_again = self.dec  # tied: one storage under two state_dict names
        self.register_buffer("offset", torch.linspace(0, 1, n_out).reshape(1, n_out, 1, 1))

    def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
        return self.dec_again(torch.tanh(self.enc(x))) + self.offset


CLASSES = {"ConvNet": ConvNet}


def cube(name="ndsi", nt=8, n=16):
    rng = np.random.default_rng(0)
    return xr.DataArray(rng.random((nt, n, n), dtype=np.float32), dims=("time", "y", "x"), name=name,
                        coords={"time": pd.date_range("2016-01-01", periods=nt, freq="3MS")})


def make_model(seed=0, **kw):
    torch.manual_seed(seed)
    return ConvNet(**kw)


@pytest.fixture
def saved(tmp_path):
    model = make_model()
    metrics = pd.DataFrame({"model": ["net", "net"], "lead": [1, "all"], "mse": [np.float64(0.5), np.nan],
                            "n": np.array([3, 3])})
    path = save_model(model, tmp_path / "run" / "net", variable="ndsi", value_range=(-1, 1),
                      metrics=metrics, extra={"epochs": 3})
    return model, path


def test_round_trip_gives_identical_predictions(saved):
    model, path = saved
    assert path.name == "net.json" and path.with_suffix(".safetensors").is_file()
    x = torch.from_numpy(cube().values[None, :2, :8, :8].copy())
    loaded = load_model(path.with_suffix(""), model_classes=CLASSES)
    assert type(loaded) is ConvNet and not loaded.training
    assert loaded.config == model.config
    model.eval()
    assert torch.equal(loaded(x), model(x))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    # either file's name works as the path
    again = load_model(path.with_suffix(".safetensors"), model_classes=CLASSES)
    assert torch.equal(again(x), model(x))


def test_metadata_records_what_rebuilds_and_checks(saved):
    _, path = saved
    meta = json.loads(path.read_text())
    assert meta["class"] == "ConvNet" and meta["config"] == {"patch_size": 8, "n_in": 2, "n_out": 2,
                                                               "hidden": 3}
    assert (meta["patch_size"], meta["n_in"], meta["n_out"]) == (8, 2, 2)
    assert meta["variable"] == "ndsi" and meta["value_range"] == [-1.0, 1.0]
    assert meta["metrics"] == [{"model": "net", "lead": 1, "mse": 0.5, "n": 3},
                               {"model": "net", "lead": "all", "mse": None, "n": 3}]
    assert meta["extra"] == {"epochs": 3}
    assert meta["xglacier_version"] == xglacier.__version__
    assert meta["torch_version"] == torch.__version__
    assert meta["format_version"] == FORMAT_VERSION
    assert re.fullmatch(r"[0-9a-f]{64}", meta["weights"]["sha256"])
    assert read_metadata(path) == meta
    loaded = load_model(path, model_classes=CLASSES)
    assert loaded.checkpoint_meta["value_range"] == [-1.0, 1.0]


def test_weights_file_is_safetensors_not_pickle(saved):
    _, path = saved
    raw = path.with_suffix(".safetensors").read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    assert header["__metadata__"]["xglacier_class"] == "ConvNet"
    assert {"enc.weight", "dec.weight", "dec_again.weight", "offset"} <= set(header)
    assert not raw.startswith(b"PK") and b"\x80\x02" not in raw[:2]  # no zip, no pickle protocol


def test_no_pickle_in_the_code():
    root = Path(xglacier.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) > 40
    for path in files:
        code = path.read_text()
        for pattern in (r"import pickle", r"\bpickle\.", r"torch\.load\(", r"torch\.save\(",
                        r"weights_only", r"import joblib", r"cloudpickle"):
            assert not re.search(pattern, code), f"{path.relative_to(root)} uses {pattern}"


@pytest.mark.parametrize(("expect", "field"), [
    (dict(patch_size=16), "patch_size: checkpoint has 8, data has 16"),
    (dict(size=16), "patch_size"),
    (dict(n_in=4), "n_in: checkpoint has 2, data has 4"),
    (dict(n_out=1), "n_out"),
    (dict(variable="ndwi"), "variable: checkpoint was trained on 'ndsi', data is 'ndwi'"),
])
def test_mismatch_is_refused_naming_the_field(saved, expect, field):
    _, path = saved
    with pytest.raises(CheckpointError, match=re.escape(field)):
        load_model(path, expect=expect, model_classes=CLASSES)


def test_expect_from_patchset_and_dataarray(saved):
    _, path = saved
    good = xglacier.patches(cube(), size=8, stride=4, n_in=2, n_out=2)
    assert isinstance(load_model(path, expect=good, model_classes=CLASSES), ConvNet)
    assert isinstance(load_model(path, expect=cube(), model_classes=CLASSES), ConvNet)
    wrong = xglacier.patches(cube(name="ndwi"), size=10, stride=4, n_in=3, n_out=2)
    with pytest.raises(CheckpointError) as info:
        load_model(path, expect=wrong, model_classes=CLASSES)
    message = str(info.value)
    assert "patch_size" in message and "n_in" in message and "variable" in message
    assert "n_out" not in message
    with pytest.raises(CheckpointError, match="variable"):
        load_model(path, expect=cube(name="ndwi"), model_classes=CLASSES)
    with pytest.raises(XGlacierError, match="unknown key"):
        load_model(path, expect={"stride": 4}, model_classes=CLASSES)


def test_missing_files(saved, tmp_path):
    _, path = saved
    with pytest.raises(CheckpointNotFoundError, match=r"nothing\.json does not exist"):
        load_model(tmp_path / "nothing", model_classes=CLASSES)
    path.with_suffix(".safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"net\.safetensors do not exist"):
        load_model(path, model_classes=CLASSES)


def test_unknown_class_and_newer_format(saved):
    _, path = saved
    with pytest.raises(CheckpointError, match=r"'ConvNet' model; known classes: \['Other'\]"):
        load_model(path, model_classes={"Other": nn.Linear})
    meta = json.loads(path.read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}.*upgrade xglacier"):
        load_model(path, model_classes=CLASSES)
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(path, model_classes=CLASSES)


def test_weights_that_do_not_fit_the_config(saved):
    _, path = saved
    meta = json.loads(path.read_text())
    meta["config"]["hidden"] = 5
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"enc\.weight: weights \(3, 2, 3, 3\), model \(5, 2, 3, 3\)"):
        load_model(path, model_classes=CLASSES)


def test_weights_from_another_save_are_refused(saved, tmp_path):
    _, path = saved
    other = save_model(make_model(seed=1), tmp_path / "other")
    path.with_suffix(".safetensors").write_bytes(other.with_suffix(".safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        load_model(path, model_classes=CLASSES)


def test_failed_save_writes_nothing_and_leaves_no_temporary_files(tmp_path):
    model = make_model()
    model.config["bad"] = object()
    with pytest.raises(CheckpointError, match=r"model\.config\['bad'\] is a object"):
        save_model(model, tmp_path / "bad")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(XGlacierError, match="value_range"):
        save_model(make_model(), tmp_path / "bad", value_range=(1, 0))
    assert list(tmp_path.iterdir()) == []
    # overwriting an existing checkpoint leaves exactly its two files
    save_model(make_model(seed=0), tmp_path / "m")
    save_model(make_model(seed=1), tmp_path / "m.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    loaded = load_model(tmp_path / "m", model_classes=CLASSES)
    assert torch.equal(loaded.enc.weight, make_model(seed=1).enc.weight)


def test_checkpoint_paths_keep_dots_in_names():
    assert [p.name for p in checkpoint_paths("a/run.v2")] == ["run.v2.json", "run.v2.safetensors"]
    assert checkpoint_paths("a/run.safetensors") == checkpoint_paths("a/run")


def test_library_models_round_trip_through_the_registry(tmp_path):
    torch.manual_seed(0)
    model = ConvLSTM(preset="small", patch_size=8)
    x = torch.rand(2, 4, 8, 8)
    save_model(model, tmp_path / "convlstm", variable="ndsi")
    loaded = load_model(tmp_path / "convlstm", expect={"patch_size": 8, "variable": "ndsi"})
    assert type(loaded) is ConvLSTM and "ConvLSTM" in MODEL_CLASSES
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    base = Persistence(patch_size=8, n_in=4, n_out=4)
    save_model(base, tmp_path / "persistence")
    assert torch.equal(load_model(tmp_path / "persistence")(x), base(x))
