"""The model registry: user classes round-trip through checkpoints by name; unknown names are refused."""

from __future__ import annotations

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
