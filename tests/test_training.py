"""Training (fit) and evaluation (evaluate) on tiny synthetic PatchSets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

import xglacier
from xglacier.errors import InputError, ParameterError
from xglacier.models import Climatology, Persistence, SeasonalPersistence  # noqa: F401
from xglacier.training import TrainingDivergedError, evaluate, fit

# -- helpers ----------------------------------------------------------------------------------


def trend_cube(nt=12, ny=16, nx=16, seed=0, freq="3MS", name="ndsi"):
    """Per-pixel linear trends: the next frame is exactly 2 * last - previous."""
    rng = np.random.default_rng(seed)
    a = rng.random((ny, nx))
    b = rng.uniform(-0.05, 0.05, (ny, nx))
    data = (a + b * np.arange(nt)[:, None, None]).astype(np.float32)
    return xr.DataArray(data, dims=("time", "y", "x"), name=name,
                        coords={"time": pd.date_range("2015-01-01", periods=nt, freq=freq)})


def random_cube(nt=10, ny=12, nx=12, seed=0, freq="3MS", name="ndsi"):
    rng = np.random.default_rng(seed)
    return xr.DataArray(rng.random((nt, ny, nx), dtype=np.float32), dims=("time", "y", "x"),
                        name=name,
                        coords={"time": pd.date_range("2015-01-01", periods=nt, freq=freq)})


class TinyNet(nn.Module):
    """A recursive conv model following the xglacier model interface; records its calls."""

    trainable = True

    def __init__(self, patch_size=8, n_in=2, n_out=2, hidden=4, dropout=0.0):
        super().__init__()
        self.config = dict(patch_size=patch_size, n_in=n_in, n_out=n_out, hidden=hidden,
                           dropout=dropout)
        self.patch_size, self.n_in, self.n_out = patch_size, n_in, n_out
        self.net = nn.Sequential(nn.Conv2d(n_in, hidden, 3, padding=1), nn.Dropout(dropout),
                                 nn.Conv2d(hidden, 1, 1))
        self.calls: list[tuple[bool, float, bool]] = []

    def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
        self.calls.append((self.training, teacher_forcing, targets is not None))
        frames, out = x, []
        for k in range(n_out or self.n_out):
            nxt = self.net(frames[:, -self.n_in:])
            out.append(nxt)
            truth = (targets is not None and self.training and teacher_forcing > 0
                     and bool(torch.rand(()) < teacher_forcing))
            frames = torch.cat([frames[:, 1:], targets[:, k:k + 1] if truth else nxt], dim=1)
        return torch.cat(out, dim=1)


class Last(nn.Module):
    """Parameter-free persistence written in the test: every lead is the last input frame."""

    trainable = False

    def __init__(self, patch_size=4, n_in=2, n_out=2):
        super().__init__()
        self.patch_size, self.n_in, self.n_out = patch_size, n_in, n_out
        self.seen: list[torch.Tensor] = []

    def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
        self.seen.append(x.clone())
        return x[:, -1:].expand(-1, n_out or self.n_out, -1, -1).clone()


def trained_net(seed=0, **kw):
    torch.manual_seed(seed)
    return TinyNet(**kw)


def mean_loss(model, ps):
    model.eval()
    with torch.no_grad():
        x, y = ps.gather(np.arange(len(ps)))
        return float(nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(y)))


def hand_errors(ps, predict):
    """Per-sample, per-lead (MSE, MAE) straight from the cube with NumPy slicing."""
    cube, p = ps.da.values.astype(np.float64), ps.plan
    se = np.empty((len(ps), p.n_out))
    ae = np.empty_like(se)
    for i, (t0, y0, x0) in enumerate(p.samples):
        win = cube[t0:t0 + p.n_in + p.n_out, y0:y0 + p.size, x0:x0 + p.size]
        pred = predict(win[:p.n_in])
        for h in range(p.n_out):
            d = pred[h] - win[p.n_in + h]
            se[i, h], ae[i, h] = (d**2).mean(), np.abs(d).mean()
    return se, ae


# -- fit ----------------------------------------------------------------------------------------


def test_small_model_overfits_tiny_set():
    ps = xglacier.patches(trend_cube(), size=8, stride=4, n_in=2, n_out=2)
    model = trained_net()
    history = fit(model, ps, epochs=12, batch_size=32, lr=5e-2, weight_decay=0.0, schedule="constant",
                  warmup=0.0, teacher_forcing=0.0, seed=0, progress=False)
    assert history.columns.tolist() == ["epoch", "train_loss", "val_loss", "lr", "seconds", "best"]
    assert len(history) == 12 and history.val_loss.isna().all()
    assert history.train_loss.iloc[-1] * 10 < history.train_loss.iloc[0]
    # without validation the final weights are kept: only the last epoch is "best"
    assert history.best.tolist() == [False] * 11 + [True]
    assert (history.lr == 5e-2).all() and (history.seconds > 0).all()
    assert mean_loss(model, ps) * 10 < history.train_loss.iloc[0]


def test_early_stopping_restores_best_weights():
    train = xglacier.patches(trend_cube(), size=8, stride=4, n_in=2, n_out=1)
    # validation targets follow half the training rule ((2 * last - previous) / 2): the
    # validation loss falls while the model is on its way to the rule, then rises
    a, b = trend_cube(nt=2, seed=1).values
    half = trend_cube(nt=3).copy(data=np.stack([a, b, b - a / 2]))
    val = xglacier.patches(half, size=8, stride=4, n_in=2, n_out=1)
    model = trained_net(n_out=1)
    patience = 2
    history = fit(model, train, val, epochs=60, batch_size=32, lr=5e-3, patience=patience,
                  schedule="constant", warmup=0.0, teacher_forcing=0.0, progress=False)
    assert model.training  # the mode it came in
    best = int(history.val_loss.idxmin())
    assert history.attrs["stopped_early"] and len(history) < 60
    assert 0 < best < len(history) - 1  # improved first, then got worse
    assert len(history) == history.epoch[best] + patience
    assert history.best.sum() == 1 and history.best[best]
    assert history.attrs["best_epoch"] == history.epoch[best]
    assert history.val_loss.iloc[-1] > history.val_loss[best]
    # the model holds the best epoch's weights again
    assert mean_loss(model, val) == pytest.approx(history.val_loss[best], rel=1e-5)


def test_same_seed_same_weights_other_seed_differs():
    ps = xglacier.patches(trend_cube(), size=8, stride=4, n_in=2, n_out=2)
    kw = dict(epochs=3, batch_size=16, lr=1e-2, teacher_forcing=0.5, progress=False)
    a, b, c = (trained_net(dropout=0.3) for _ in range(3))
    fit(a, ps, seed=5, **kw)
    fit(b, ps, seed=5, **kw)
    fit(c, ps, seed=6, **kw)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_fit_leaves_callers_random_streams_alone():
    ps = xglacier.patches(trend_cube(), size=8, stride=8, n_in=2, n_out=2)
    model = TinyNet(dropout=0.5)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(model, ps, epochs=1, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_teacher_forcing_reaches_forward_in_training_only():
    train = xglacier.patches(trend_cube(), size=8, stride=4, n_in=2, n_out=2)
    val = xglacier.patches(trend_cube(seed=2), size=8, stride=8, n_in=2, n_out=2)
    model = trained_net()
    fit(model, train, val, epochs=2, batch_size=32, teacher_forcing=0.7, progress=False)
    training = [c for c in model.calls if c[0]]
    evaluation = [c for c in model.calls if not c[0]]
    assert len(training) == 2 * -(-len(train) // 32)
    assert set(training) == {(True, 0.7, True)}
    assert len(evaluation) == 3 * -(-len(val) // 32)  # before training and after each epoch
    assert set(evaluation) == {(False, 0.0, False)}
    model.calls.clear()
    model.train()
    evaluate({"net": model}, val, baselines=False, n_boot=10)
    assert set(model.calls) == {(False, 0.0, False)}
    assert model.training  # the caller's mode is given back


def test_fit_refuses_baselines_and_mismatched_models():
    ps = xglacier.patches(trend_cube(), size=8, stride=4, n_in=2, n_out=2)
    with pytest.raises(ParameterError, match="no trainable parameters"):
        fit(Last(patch_size=8), ps, progress=False)
    with pytest.raises(InputError, match=r"patch_size=6 but train has 8"):
        fit(TinyNet(patch_size=6), ps, progress=False)
    with pytest.raises(InputError, match=r"n_in=3 but train has 2"):
        fit(TinyNet(n_in=3), ps, progress=False)
    with pytest.raises(InputError, match="val has no samples"):
        fit(TinyNet(), ps, ps.split(by="time", test=0.2, val=0.0)[1], progress=False)
    with pytest.raises(InputError, match="expected a PatchSet"):
        fit(TinyNet(), np.zeros((3, 2, 8, 8)), progress=False)


def test_fit_refuses_library_baseline():
    ps = xglacier.patches(trend_cube(), size=8, stride=4, n_in=2, n_out=2)
    with pytest.raises(ParameterError, match="Persistence"):
        fit(Persistence(patch_size=8, n_in=2, n_out=2), ps, progress=False)


@pytest.mark.parametrize(("kw", "name"), [
    ({"epochs": 0}, "epochs"), ({"batch_size": 2.5}, "batch_size"), ({"lr": -1.0}, "lr"),
    ({"lr": float("nan")}, "lr"), ({"teacher_forcing": 1.5}, "teacher_forcing"),
    ({"patience": -1}, "patience"), ({"clip": -1.0}, "clip"), ({"loss": "huber"}, "loss"),
    ({"weight_decay": -0.1}, "weight_decay"), ({"recipe": "fast"}, "recipe"),
    ({"schedule": "step"}, "schedule"),
    ({"warmup": 1.0}, "warmup"), ({"augment": 1}, "augment"), ({"normalize": "yes"}, "normalize"),
])
def test_fit_bad_parameters(kw, name):
    ps = xglacier.patches(trend_cube(), size=8, stride=4, n_in=2, n_out=2)
    with pytest.raises(ParameterError, match=rf"fit: {name}="):
        fit(TinyNet(), ps, progress=False, **kw)


def test_diverging_loss_is_reported_and_best_weights_kept():
    train = xglacier.patches(trend_cube(), size=8, stride=4, n_in=2, n_out=2)
    val = xglacier.patches(trend_cube(seed=3), size=8, stride=8, n_in=2, n_out=2)
    calls = {"n": 0}

    def flaky(pred, target):  # NaN from the 3rd training epoch on
        calls["n"] += pred.requires_grad
        loss = nn.functional.mse_loss(pred, target)
        return loss * float("nan") if calls["n"] > 2 * len(train.to_torch(batch_size=32)) else loss

    model = trained_net()
    with pytest.raises(TrainingDivergedError, match="became nan in epoch 3"):
        fit(model, train, val, epochs=5, batch_size=32, lr=1e-2, loss=flaky, progress=False)
    assert np.isfinite(mean_loss(model, val))


# -- evaluate -------------------------------------------------------------------------------------


def test_evaluate_matches_numpy_by_hand():
    ps = xglacier.patches(random_cube(), size=4, stride=4, n_in=2, n_out=2)
    table = evaluate({"last": Last()}, ps, baselines=False, n_boot=500, batch_size=10)
    se, ae = hand_errors(ps, lambda frames: np.repeat(frames[-1:], 2, axis=0))
    assert table.columns.tolist() == ["model", "lead", "mse", "mse_low", "mse_high", "mae",
                                      "mae_low", "mae_high", "skill", "skill_low", "skill_high",
                                      "skill_reference", "n"]
    assert table.lead.tolist() == [1, 2, "all"] and len(ps) == 63 and (table.n == 63).all()
    np.testing.assert_allclose(table.mse, [*se.mean(0), se.mean()], rtol=1e-6)
    np.testing.assert_allclose(table.mae, [*ae.mean(0), ae.mean()], rtol=1e-6)
    assert (table.mse_low < table.mse).all() and (table.mse < table.mse_high).all()
    assert (table.mae_low < table.mae).all() and (table.mae < table.mae_high).all()


def test_evaluate_uses_every_sample_exactly_once():
    ps = xglacier.patches(random_cube(), size=4, stride=4, n_in=2, n_out=2)
    model = Last()
    evaluate(model, ps, baselines=False, n_boot=0, batch_size=10)
    seen = torch.cat(model.seen).numpy()
    np.testing.assert_array_equal(seen, ps.gather(np.arange(len(ps)))[0])
    assert [len(b) for b in model.seen] == [10] * 6 + [3]


def test_bootstrap_interval_width_and_seed():
    ps = xglacier.patches(random_cube(ny=16, nx=16), size=4, stride=2, n_in=2, n_out=2)
    table = evaluate({"last": Last()}, ps, baselines=False, n_boot=4000, seed=1, bootstrap="sample")
    se, _ = hand_errors(ps, lambda frames: np.repeat(frames[-1:], 2, axis=0))
    overall = se.mean(1)
    # the percentile interval of a mean of samples resampled one by one is close to +-1.96
    # standard errors (the spatial block bootstrap, the default, is tested in test_skill.py)
    half = 1.959964 * overall.std() / np.sqrt(overall.size)
    row = table[table.lead == "all"].iloc[0]
    assert (row.mse_high - row.mse_low) / 2 == pytest.approx(half, rel=0.15)
    again = evaluate({"last": Last()}, ps, baselines=False, n_boot=4000, seed=1, bootstrap="sample")
    pd.testing.assert_frame_equal(table, again)
    other = evaluate({"last": Last()}, ps, baselines=False, n_boot=4000, seed=2, bootstrap="sample")
    np.testing.assert_array_equal(other.mse, table.mse)
    assert not np.array_equal(other.mse_low, table.mse_low)
    no_ci = evaluate({"last": Last()}, ps, baselines=False, n_boot=0)
    assert no_ci.mse_low.isna().all() and np.array_equal(no_ci.mse, table.mse)


def test_evaluate_errors():
    ps = xglacier.patches(random_cube(), size=4, stride=4, n_in=2, n_out=2)

    class Wrong(Last):
        def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
            return x[:, -1:]

    with pytest.raises(InputError, match=r"model 'w' returned \(10, 1, 4, 4\)"):
        evaluate({"w": Wrong()}, ps, baselines=False, batch_size=10)
    with pytest.raises(InputError, match="patch_size=5 but test has 4"):
        evaluate({"m": Last(patch_size=5)}, ps, baselines=False)
    with pytest.raises(ParameterError, match="ci="):
        evaluate(Last(), ps, baselines=False, ci=1.5)
    with pytest.raises(ParameterError, match="no model to score"):
        evaluate({}, ps, baselines=False)
    with pytest.raises(ParameterError, match=r"expected a torch\.nn\.Module"):
        evaluate({"m": "persistence"}, ps, baselines=False)


def test_evaluate_includes_baselines_computed_by_hand():
    ps = xglacier.patches(random_cube(nt=12), size=4, stride=4, n_in=4, n_out=2)
    table = evaluate({"last": Last(n_in=4)}, ps, n_boot=200)
    names = ["last", "persistence", "seasonal_persistence", "history_climatology", "climatology",
             "linear_trend"]
    assert table.model.unique().tolist() == names
    rows = {name: table[table.model == name].reset_index(drop=True) for name in names}
    # same predictions, same bootstrap draws: identical rows, intervals included
    pd.testing.assert_frame_equal(rows["last"].drop(columns="model"),
                                  rows["persistence"].drop(columns="model"))
    t = np.arange(4.0)

    def trend(f):
        slope = ((t - t.mean())[:, None, None] * (f - f.mean(0))).sum(0) / ((t - t.mean()) ** 2).sum()
        return np.stack([f.mean(0) + slope * (4 + h - t.mean()) for h in range(2)])

    # quarterly frames: one year is 4 frames back, lead h uses input h - 1
    for name, predict in (("climatology", lambda f: np.repeat(f.mean(0, keepdims=True), 2, axis=0)),
                          ("seasonal_persistence", lambda f: f[:2]),
                          ("linear_trend", trend)):
        se, ae = hand_errors(ps, predict)
        np.testing.assert_allclose(rows[name].mse, [*se.mean(0), se.mean()], rtol=1e-5)
        np.testing.assert_allclose(rows[name].mae, [*ae.mean(0), ae.mean()], rtol=1e-5)
    # the long-term climatology: lead h's quarter averaged over every frame 4, 8, ... before it
    cube = ps.da.values.astype(np.float64)
    se = np.empty((len(ps), 2))
    for i, (t0, y0, x0) in enumerate(ps.plan.samples):
        for h in range(2):
            t = t0 + 4 + h
            past = cube[t % 4:t0 + 4:4, y0:y0 + 4, x0:x0 + 4]
            se[i, h] = ((past.mean(0) - cube[t, y0:y0 + 4, x0:x0 + 4]) ** 2).mean()
    np.testing.assert_allclose(rows["history_climatology"].mse, [*se.mean(0), se.mean()], rtol=1e-5)
    assert (table.mse_low <= table.mse).all() and (table.mse <= table.mse_high).all()
    with pytest.raises(ParameterError, match="baseline names"):
        evaluate({"persistence": Last(n_in=4)}, ps)


def test_seasonal_baseline_needs_a_year_of_inputs():
    monthly = xglacier.patches(random_cube(nt=10, freq="MS"), size=4, stride=4, n_in=4, n_out=2)
    assert "seasonal_persistence" not in set(evaluate(None, monthly, n_boot=0).model)
    quarterly = xglacier.patches(random_cube(nt=10), size=4, stride=4, n_in=4, n_out=2)
    assert "seasonal_persistence" in set(evaluate(None, quarterly, n_boot=0).model)
    # the seasonal climatology only when the inputs cover two years (else it is seasonal persistence)
    assert "seasonal_climatology" not in set(evaluate(None, quarterly, n_boot=0).model)
    two_years = xglacier.patches(random_cube(nt=12), size=4, stride=4, n_in=8, n_out=2)
    table = evaluate(None, two_years, n_boot=0)
    row = table[table.model == "seasonal_climatology"].reset_index(drop=True)
    # lead h: the mean of inputs h and h + 4, by hand
    se, ae = hand_errors(two_years, lambda f: (f[:2] + f[4:6]) / 2)
    np.testing.assert_allclose(row.mse, [*se.mean(0), se.mean()], rtol=1e-5)
    np.testing.assert_allclose(row.mae, [*ae.mean(0), ae.mean()], rtol=1e-5)
