"""Checkpoint files: umask permissions, nothing left by a failed write, the model registry."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from xglacier.nn import register_model, registered_models
from xglacier.nn.checkpoint import CheckpointError, load_model, save_model


@register_model
class RegisteredAffine(nn.Module):
    """A user model made loadable by name through the registry."""

    def __init__(self, patch_size=4, n_in=2, n_out=1, scale=3.0):
        super().__init__()
        self.config = dict(patch_size=patch_size, n_in=n_in, n_out=n_out, scale=scale)
        self.patch_size, self.n_in, self.n_out = patch_size, n_in, n_out
        self.conv = nn.Conv2d(n_in, n_out, 1)
        self.scale = scale

    def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
        return self.scale * self.conv(x)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_saved_checkpoint_files_get_the_umask_permissions(tmp_path, umask_022):
    json_path = save_model(RegisteredAffine(), tmp_path / "model")
    for path in (json_path, json_path.with_suffix(".safetensors")):
        assert path.stat().st_mode & 0o777 == 0o644, path.name  # not mkstemp's 0o600
    os.umask(0o077)
    private = save_model(RegisteredAffine(), tmp_path / "private")
    assert private.stat().st_mode & 0o777 == 0o600


def test_failed_weights_write_leaves_no_file_and_no_temporary(tmp_path, monkeypatch):
    import xglacier.nn.checkpoint as checkpoint

    def unreadable(path):
        assert path.is_file() and path.parent == tmp_path  # the weights are written: now it fails
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(checkpoint, "_sha256", unreadable)
    with pytest.raises(OSError, match="Input/output error"):
        save_model(RegisteredAffine(), tmp_path / "model")
    assert list(tmp_path.iterdir()) == []  # no weights, no JSON, no temporary


def test_user_registered_model_round_trips_by_name(tmp_path):
    assert registered_models()["RegisteredAffine"] is RegisteredAffine
    torch.manual_seed(0)
    model = RegisteredAffine(scale=0.5).eval()
    save_model(model, tmp_path / "affine", variable="ndsi")
    loaded = load_model(tmp_path / "affine", expect={"variable": "ndsi", "n_in": 2})  # no model_classes=
    assert type(loaded) is RegisteredAffine and loaded.scale == 0.5
    x = torch.rand(3, 2, 4, 4)
    assert torch.equal(loaded(x), model(x))


def test_unknown_class_names_the_registered_ones(tmp_path):
    class Unregistered(RegisteredAffine):
        pass

    save_model(Unregistered(), tmp_path / "lost")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "lost")
    message = str(info.value)
    assert "'Unregistered' model" in message
    for name in ("RegisteredAffine", "UNet", "SALSTM"):
        assert repr(name) in message
    assert "register_model" in message
