"""segment(tta=True): probabilities averaged over the 8 turns and flips of every window."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xglacier.errors import ParameterError
from xglacier.segmentation.classes import NODATA
from xglacier.segmentation.segment import segment

from .test_segment import ConvNet, Pointwise, features, labels_of, make, reference


class Symmetrised:
    """``model`` averaged over the square's 8 symmetries, written with NumPy (the test's own reference)."""

    def __init__(self, model):
        self.model, self.classes = model, model.classes

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        x = x.numpy()
        total = np.zeros((x.shape[0], len(self.classes), *x.shape[2:]))
        for turns in range(4):
            for flip in (False, True):
                seen = np.rot90(x, turns, axes=(2, 3))
                seen = seen[..., ::-1] if flip else seen
                p = self.model.predict_proba(torch.from_numpy(np.ascontiguousarray(seen))).numpy()
                p = p[..., ::-1] if flip else p
                total += np.rot90(p, -turns, axes=(2, 3))
        return torch.from_numpy(total / 8)


@pytest.mark.parametrize("shape", [(70, 90), (20, 75)])  # (20, 75): one window of 20 rows along y
def test_tta_is_the_mean_over_turns_and_flips(shape):
    model = make(ConvNet)
    f = features(*shape)
    want = reference(Symmetrised(model), f.values, 32, 8)
    out = segment(f.chunk({"x": 33}), model, tile=32, overlap=8, tta=True).compute()
    np.testing.assert_allclose(out.probability.values, want, rtol=1e-5, atol=1e-6)
    assert np.array_equal(out.label.values, labels_of(out.probability.values))
    assert (out.label.values[np.isnan(f.values).any(axis=0)] == NODATA).all()
    plain = segment(f, model, tile=32, overlap=8).probability.values
    assert np.nanmax(np.abs(plain - out.probability.values)) > 1e-3  # a convolution has an orientation


def test_tta_of_an_equivariant_model_changes_nothing():
    model = make(Pointwise)  # a 1x1 convolution: every turn and flip commutes with it
    f = features(50, 61)
    plain = segment(f, model, tile=32, overlap=8).probability.values
    tta = segment(f, model, tile=32, overlap=8, tta=True).probability.values
    np.testing.assert_allclose(tta, plain, rtol=1e-6, atol=1e-7)


def test_tta_is_the_same_for_any_chunking():
    model = make(ConvNet)
    f = features(70, 90)
    whole = segment(f, model, tile=32, overlap=8, tta=True)
    for chunks in ({"x": 17}, {"y": 25, "x": 40}):
        parts = segment(f.chunk(chunks), model, tile=32, overlap=8, tta=True).compute()
        assert np.array_equal(parts.probability.values, whole.probability.values, equal_nan=True)
        assert np.array_equal(parts.label.values, whole.label.values)


@pytest.mark.parametrize("flip", ["y", "x"])
def test_tta_of_one_window_follows_a_flipped_scene(flip):
    """A scene in one window: with every symmetry averaged, flipping the scene flips the result."""
    model = make(ConvNet)
    f = features(30, 40)
    flipped = f.isel({flip: slice(None, None, -1)})  # y ascending, or x descending
    a = segment(f, model, tile=64, overlap=0, tta=True)
    b = segment(flipped, model, tile=64, overlap=0, tta=True)
    np.testing.assert_allclose(b.probability.isel({flip: slice(None, None, -1)}).values, a.probability.values,
                               rtol=1e-5, atol=1e-6)
    assert (b.y.values == flipped.y.values).all() and (b.x.values == flipped.x.values).all()
    # without TTA too: the model sees every scene north-up and east-right
    plain = segment(flipped, model, tile=64, overlap=0).probability.isel({flip: slice(None, None, -1)})
    np.testing.assert_array_equal(plain.values, segment(f, model, tile=64, overlap=0).probability.values)


def test_tta_flag_checked():
    with pytest.raises(ParameterError, match="segment: tta=1; expected True or False"):
        segment(features(10, 10), make(Pointwise), tile=8, overlap=0, tta=1)
