"""fine_tune(average_last=K): the mean of the weights of the last K epochs, batch norm measured again."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

import xglacier
from xglacier.errors import ParameterError
from xglacier.models import UNet
from xglacier.segmentation import finetune as ftmod
from xglacier.segmentation.finetune_average import WeightAverage, recompute_batch_norm
from xglacier.segmentation.tiles import segmentation_tiles

from .test_finetune import _write_scene, glacier_polygon, make_scene, tune


@pytest.fixture(scope="module")
def scene():
    return make_scene()


def _net(batch_norm: bool = True) -> UNet:
    torch.manual_seed(0)
    return UNet(["ndsi", "elevation"], ["background", "glacier"], depth=1, base_channels=4, patch_size=16,
                batch_norm=batch_norm, mean=[0.3, 2500.0], std=[0.5, 300.0])


def _labels(f: xr.DataArray, truth: np.ndarray) -> xr.DataArray:
    return xr.DataArray(truth.astype("u1"), dims=("y", "x"), coords={"y": f.y, "x": f.x})


def _params(net: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: p.detach().numpy().copy() for k, p in net.named_parameters()}


def test_average_of_identical_weights_is_those_weights(scene):
    f, truth = scene
    net = _net()
    before = _params(net)
    tiles = segmentation_tiles(f, _labels(f, truth), size=16)
    average = WeightAverage(net, epochs=5, count=3)
    for _ in range(5):  # five "epochs" in which nothing trains
        for _ in average.wrap([None, None]):
            pass
    assert average.apply(tiles, 4) == 3
    after = _params(net)
    assert all(np.array_equal(after[k], v) for k, v in before.items())


def test_average_is_the_mean_of_the_last_epochs(monkeypatch, scene):
    """The returned weights are the mean of the weights seen after each of the last 3 epochs."""
    f, _ = scene
    seen: list[dict[str, np.ndarray]] = []
    evaluate = ftmod._evaluate

    def recording(net, *args):  # called before training, after every epoch, and after the run
        seen.append(_params(net))
        return evaluate(net, *args)

    monkeypatch.setattr(ftmod, "_evaluate", recording)
    tuned, history = tune(_net(), f, glacier_polygon(), epochs=5, refit=False, average_last=3,
                          schedule="cosine")
    epochs = seen[1:6]  # the weights at the end of epochs 1..5
    assert history.attrs["averaged_epochs"] == 3
    for name, value in _params(tuned).items():
        mean = np.mean([e[name].astype(np.float64) for e in epochs[2:]], axis=0)
        np.testing.assert_allclose(value, mean.astype(np.float32), rtol=1e-6, atol=1e-8)
        assert not np.array_equal(value, epochs[-1][name])
    # the held-out scores after the run are those of the averaged weights (the last evaluation)
    assert all(np.array_equal(seen[-1][k], v) for k, v in _params(tuned).items())
    assert history.attrs["fine_tuning"]["training"]["average_last"] == 3


def test_batch_norm_statistics_are_measured_on_the_tiles(scene):
    f, truth = scene
    net = _net()
    tiles = segmentation_tiles(f, _labels(f, truth), size=16, stride=16)
    assert len(tiles) % 3 == 0  # equal batches: the mean of the batch means is the mean over tiles
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    inputs = []
    hook = bn.register_forward_pre_hook(lambda _, args: inputs.append(args[0].detach().clone()))
    net.eval()
    with torch.no_grad():
        for xb, _ in tiles.to_torch(batch_size=3):
            net(net.normalise(xb))
    hook.remove()
    recompute_batch_norm(net, tiles, 3)
    acts = torch.cat(inputs).double()
    np.testing.assert_allclose(bn.running_mean.numpy(), acts.mean(dim=(0, 2, 3)).numpy(), rtol=1e-5,
                               atol=1e-6)
    batch_vars = [b.double().var(dim=(0, 2, 3), unbiased=True) for b in inputs]
    np.testing.assert_allclose(bn.running_var.numpy(), torch.stack(batch_vars).mean(0).numpy(), rtol=1e-5)
    assert bn.momentum == 0.1 and not net.training
    # and without batch norm nothing changes
    plain = _net(batch_norm=False)
    state = {k: v.clone() for k, v in plain.state_dict().items()}
    recompute_batch_norm(plain, tiles, 3)
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in state.items())


@pytest.mark.filterwarnings("ignore::xglacier.errors.XGlacierWarning")
def test_average_and_gains_are_the_same_for_y_ascending_scenes():
    f, _ = make_scene()
    up, _ = make_scene(y_ascending=True)
    opts = {"epochs": 3, "average_last": 2, "radiometric": 0.3}
    a, _ = tune(_net(), f, glacier_polygon(), **opts)
    b, _ = tune(_net(), up, glacier_polygon(), **opts)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    c, _ = tune(_net(), f, glacier_polygon(), epochs=3, average_last=2)
    assert not all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_average_last_checked(scene):
    f, _ = scene
    net = _net()
    for bad, match in ((0, "average_last=0"), (13, "average_last=13"), (True, "average_last=True"),
                       (2.0, "average_last=2.0")):
        with pytest.raises(ParameterError, match=match):
            tune(net, f, glacier_polygon(), average_last=bad)
    with pytest.raises(ParameterError, match="pass patience=None"):
        tune(net, f, glacier_polygon(), average_last=2, patience=3)


@pytest.mark.filterwarnings("ignore::xglacier.errors.XGlacierWarning")  # an untrained parent, 2 epochs
def test_cli_average_last_and_radiometric(tmp_path, scene, capsys):
    from xglacier.cli import main

    f, _ = scene
    paths = _write_scene(tmp_path, f)
    feats = xglacier.features(xglacier.open_scenes(paths), indices=["ndsi"])
    model = UNet([str(c) for c in feats.channel.values], ["background", "glacier"], depth=1,
                 base_channels=4, patch_size=16)
    xglacier.save_model(model, tmp_path / "parent", variable="features")
    glacier_polygon().to_file(tmp_path / "corrected.gpkg")
    args = ["fine-tune", str(tmp_path / "parent"), "--image", *paths, "--polygons",
            str(tmp_path / "corrected.gpkg"), "--out", str(tmp_path / "new"), "--epochs", "3", "--quiet",
            "--schedule", "cosine", "--average-last", "2"]
    assert main(args) == 1  # fine_tune's default patience: refused with its message
    assert "pass patience=None" in capsys.readouterr().err
    assert main([*args, "--patience", "0", "--radiometric", "0.1", "--no-augment", "--stride", "8",
                 "--batch-size", "2"]) == 0
    training = json.loads((tmp_path / "new.json").read_text())["extra"]["fine_tuning"][0]["training"]
    assert training["average_last"] == 2 and training["patience"] is None
    assert training["radiometric"] == 0.1 and training["augment"] is False
    assert training["stride"] == 8 and training["batch_size"] == 2

