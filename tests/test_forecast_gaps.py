"""Missing input frames (``gaps=True``): what ``composite`` interpolated is read as missing.

A gap-aware model adds its learned ``missing_frame`` to the flagged inputs (and nothing else
changes: untrained, it is its reference forecast); ``PatchSet``, ``fit``, ``evaluate`` and
``forecast`` pass the flags from the ``interpolated`` coordinate; ``fit`` hides observed frames
at random (``gap_rate``), interpolated as ``composite`` fills a gap, so the model meets gaps in
training.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xglacier
from xglacier.errors import InputError, InterpolatedInputWarning, ParameterError
from xglacier.models import SALSTM, ConvLSTM, LSTMEncoderDecoder, SeasonalPersistence

LEARNED = [SALSTM, LSTMEncoderDecoder, ConvLSTM]


def small(cls, **kw):
    extra = {"heads": 4} if cls is SALSTM else {}
    return cls(preset="small", patch_size=8, **extra, **{"gaps": True, **kw})


def randomised(model, seed=0, scale=0.3):
    """Every weight random (the missing frame and zero-started heads included): a network whose
    output depends on everything it reads (``scale`` 0.3 makes the SA-LSTM-H chaotic: a change
    of 1e-7 in an input moves its output by 0.05; 0.05 keeps it smooth)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


def quarterly(nt=12, ny=16, nx=16, gap=None, seed=0):
    rng = np.random.default_rng(seed)
    flags = np.zeros(nt, bool) if gap is None else np.isin(np.arange(nt), gap)
    return xr.DataArray(rng.random((nt, ny, nx), dtype=np.float32), dims=("time", "y", "x"), name="ndsi",
                        coords={"time": pd.date_range("2015-01-01", periods=nt, freq="3MS"),
                                "interpolated": ("time", flags),
                                "y": 3.5e6 - 30 * np.arange(ny), "x": 7e5 + 30 * np.arange(nx)})


# -- the model ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", LEARNED)
def test_the_missing_frame_is_added_where_frames_are_missing(cls):
    """Flags act only through ``missing_frame`` added to the flagged (normalised) inputs: the same
    weights without gaps, fed the inputs shifted by ``std * missing_frame`` there, agree."""
    model = randomised(small(cls, statistics=(0.3, 0.4)), scale=0.05)
    with torch.no_grad():
        model.missing_frame.mul_(20)  # a missing frame of the data's own scale
    plain = small(cls, statistics=(0.3, 0.4), gaps=False).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k != "missing_frame"})
    x = torch.rand(2, 4, 8, 8)
    missing = torch.tensor([[False, True, False, False], [True, False, False, True]])
    shifted = x + 0.4 * missing[:, :, None, None] * model.missing_frame.detach()
    with torch.no_grad():
        torch.testing.assert_close(model(x, missing=missing), plain(shifted), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model(x, missing=torch.zeros(2, 4, dtype=torch.bool)), plain(x))
        assert not torch.allclose(model(x, missing=missing), model(x))


@pytest.mark.parametrize("cls", LEARNED)
@pytest.mark.parametrize("residual", ["seasonal", "climatology", "last"])
def test_an_untrained_gap_aware_model_forecasts_its_observed_reference(cls, residual):
    """The missing frame and the residual head start at zero: untrained, the model forecasts its
    reference, taken from observed inputs only (the same quarter of the latest year observed,
    the mean over the observed years, the last observed frame)."""
    model = small(cls, residual=residual, statistics=(0.2, 0.5), n_in=8).eval()
    x = torch.rand(3, 8, 8, 8)
    missing = torch.zeros(3, 8, dtype=torch.bool)
    missing[1, 4] = True            # lead 0's latest same-season input (4; the other is 0)
    missing[2, [7, 3]] = True       # both of lead 3's, and the last frame
    with torch.no_grad():
        out = model(x, missing=missing)
        torch.testing.assert_close(out[0], model(x)[0], rtol=0, atol=0)  # nothing missing: unchanged
    if residual == "seasonal":
        torch.testing.assert_close(model(x)[0], SeasonalPersistence(patch_size=8, n_in=8)(x)[0])
        torch.testing.assert_close(out[1, 0], x[1, 0])  # a year further back
        torch.testing.assert_close(out[1, 1:], x[1, 5:8])
        torch.testing.assert_close(out[2, 3], x[2, 7])  # none observed: as without flags
    elif residual == "climatology":
        torch.testing.assert_close(out[1, 0], x[1, 0])
        torch.testing.assert_close(out[1, 1], (x[1, 1] + x[1, 5]) / 2)
        torch.testing.assert_close(out[2, 3], (x[2, 3] + x[2, 7]) / 2)
    else:
        torch.testing.assert_close(out[1], x[1, 7].expand(4, -1, -1))
        torch.testing.assert_close(out[2], x[2, 6].expand(4, -1, -1))  # the last observed frame


@pytest.mark.parametrize("cls", LEARNED)
def test_gaps_false_reads_the_frames_as_they_are(cls):
    model = randomised(small(cls, residual="seasonal", gaps=False))
    assert model.config["gaps"] is False and model.missing_frame is None
    x = torch.rand(2, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x, missing=torch.ones(2, 4, dtype=torch.bool)), model(x))


def test_missing_flags_are_checked():
    model = small(SALSTM)
    x = torch.rand(2, 4, 8, 8)
    with pytest.raises(InputError, match=r"SALSTM: missing of shape \(2, 3\).*expected booleans of shape"):
        model(x, missing=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(InputError, match=r"dtype torch\.float32"):
        model(x, missing=torch.zeros(2, 4))
    with pytest.raises(ParameterError, match="SALSTM: gaps='yes'"):
        small(SALSTM, gaps="yes")


def test_a_checkpoint_keeps_the_missing_frame_and_old_ones_load_without(tmp_path):
    from xglacier.nn.checkpoint import load_model, save_model

    model = randomised(small(SALSTM, residual="seasonal"))
    save_model(model, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.gaps is True
    torch.testing.assert_close(back.missing_frame, model.missing_frame)
    x, missing = torch.rand(2, 4, 8, 8), torch.tensor([[True, False, False, False]] * 2)
    with torch.no_grad():
        torch.testing.assert_close(back(x, missing=missing), model(x, missing=missing))
    # a checkpoint written before gaps existed: no "gaps" key, no missing_frame weight
    old = small(SALSTM, residual="seasonal", gaps=False)
    save_model(old, tmp_path / "old")
    meta = tmp_path / "old.json"
    import json

    doc = json.loads(meta.read_text())
    del doc["config"]["gaps"]
    meta.write_text(json.dumps(doc))
    legacy = load_model(tmp_path / "old")
    assert legacy.gaps is False and legacy.missing_frame is None


# -- patches, fit, evaluate, forecast --------------------------------------------------------


def test_patchset_input_gaps_follow_the_windows_and_splits():
    da = quarterly(nt=24, gap=[6])
    ps = xglacier.patches(da, size=8, stride=8, n_in=4, n_out=4)
    t0 = ps.plan.samples[:, 0]
    want = (t0[:, None] + np.arange(4)) == 6
    np.testing.assert_array_equal(ps.input_gaps(np.arange(len(ps))), want)
    for part in ps.split(by="time", test=0.2, val=0.2):
        t0 = part.plan.samples[:, 0]
        want = (t0[:, None] + np.arange(4)) == 6
        np.testing.assert_array_equal(part.input_gaps(np.arange(len(part))), want)
    _, _, g = next(iter(ps.to_torch(batch_size=5, gaps=True)))
    assert g.dtype == torch.bool and g.shape == (5, 4)
    assert len(next(iter(ps.to_torch(batch_size=5)))) == 2
    assert not xglacier.patches(da.drop_vars("interpolated"), size=8, n_in=4, n_out=4).input_gaps([0]).any()


def test_gap_source_hides_one_observed_frame_as_composite_fills_a_gap():
    from xglacier.forecasting.gaps import GapSource

    da = quarterly(nt=20, gap=[9])
    days = da.time.values.astype("datetime64[s]").astype(float) / 86400
    cube = da.values
    ps = xglacier.patches(da, size=8, stride=8, n_in=4, n_out=4)
    idx = np.arange(len(ps))
    x0, y0 = ps.gather(idx)
    natural = ps.input_gaps(idx)
    same = GapSource(ps, rate=0.0, seed=0).gather(idx)
    for a, b in zip(same, (x0, y0, natural), strict=True):
        np.testing.assert_array_equal(a, b)
    x, y, gaps = GapSource(ps, rate=1.0, seed=3).gather(idx)
    np.testing.assert_array_equal(y, y0)
    added = gaps & ~natural
    assert (natural <= gaps).all() and (added.sum(axis=1) <= 1).all() and not added[:, -1].any()
    t0s = ps.plan.samples[:, 0]
    assert not added[t0s == 0, 0].any()  # nothing before the series to interpolate from
    clean = ~natural[:, :3].any(axis=1)  # rate 1: every sample without a gap of its own gets one
    assert (added.sum(axis=1)[clean] == 1).all() and added[:, 0].any() and added[:, 2].any()
    for b in np.flatnonzero(added.any(axis=1)):
        i = int(np.flatnonzero(added[b])[0])
        t, (_, r, c) = t0s[b] + i, ps.plan.samples[b]
        f = (days[t] - days[t - 1]) / (days[t + 1] - days[t - 1])
        want = cube[t - 1] + f * (cube[t + 1] - cube[t - 1])
        np.testing.assert_allclose(x[b, i], want[r:r + 8, c:c + 8], rtol=1e-5, atol=1e-6)
        keep = [k for k in range(4) if k != i]
        np.testing.assert_array_equal(x[b, keep], x0[b, keep])
    again = GapSource(ps, rate=1.0, seed=3).gather(idx)
    np.testing.assert_array_equal(again[0], x)  # seeded
    with pytest.raises(ParameterError, match="GapSource: rate=2"):
        GapSource(ps, rate=2)


class Spy(torch.nn.Module):
    """Records the ``missing`` flags it is called with; forecasts the last frame."""

    gaps, patch_size, n_in, n_out = True, 8, 4, 4

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))
        self.calls = []

    def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0, missing=None):
        self.calls.append((self.training, None if missing is None else missing.clone()))
        return self.w * x[:, -1:].expand(-1, n_out or self.n_out, -1, -1)


def test_fit_and_evaluate_pass_the_flags():
    da = quarterly(nt=20, gap=[9])
    train, val, test = xglacier.patches(da, size=8, stride=8, n_in=4, n_out=4).split(
        by="time", test=0.2, val=0.2)
    spy = Spy()
    xglacier.fit(spy, train, val, epochs=1, batch_size=len(train), gap_rate=0.5, normalize=False,
                 progress=False)
    training = [m for is_training, m in spy.calls if is_training]
    validation = [m for is_training, m in spy.calls if not is_training]
    natural = train.input_gaps(np.arange(len(train)))
    assert len(training) == 1
    # every natural gap is kept, some samples get one more
    flags = training[0].numpy()
    assert flags.shape == natural.shape and (flags >= natural).all() and (flags > natural).any()
    # validation: the data's own flags and, at the same rate, hidden frames: the same ones each time
    natural_val = val.input_gaps(np.arange(len(val)))
    assert len(validation) == 2  # before training and after the epoch
    np.testing.assert_array_equal(validation[0].numpy(), validation[1].numpy())
    assert (validation[0].numpy() >= natural_val).all() and (validation[0].numpy() > natural_val).any()
    spy.calls.clear()
    xglacier.evaluate({"spy": spy}, test, n_boot=10)
    np.testing.assert_array_equal(torch.cat([m for _, m in spy.calls]).numpy(),
                                  test.input_gaps(np.arange(len(test))))
    with pytest.raises(ParameterError, match=r"fit: gap_rate=1\.5"):
        xglacier.fit(Spy(), train, epochs=1, gap_rate=1.5, progress=False)


@pytest.mark.parametrize("chunked", [False, True])
def test_forecast_passes_the_interpolated_frames_as_missing(chunked):
    da = quarterly(nt=8, ny=20, nx=20, gap=[5])
    model = randomised(small(SALSTM, residual="seasonal", statistics=(0.5, 0.3)), scale=0.05)
    src = da.chunk({"y": 7}) if chunked else da
    with warnings.catch_warnings():
        warnings.simplefilter("error", InterpolatedInputWarning)  # read as missing: nothing to warn of
        fc = xglacier.forecast(src, model, steps=6, stride=4).compute()
    # by hand: the last 4 frames (indices 4..7, the second missing) through the model, patch by patch
    from xglacier.forecasting.blend import assemble
    from xglacier.forecasting.patches import make_plan

    frames = torch.from_numpy(da.values[4:8])
    plan = make_plan((4, 20, 20), 8, 4, 4, 0)
    x = torch.stack([frames[:, y0:y0 + 8, x0:x0 + 8] for _, y0, x0 in plan.samples])
    with torch.no_grad():
        pred = model(x, missing=torch.tensor([[False, True, False, False]] * len(x)))
    first = assemble(pred.numpy(), plan.samples[:, 1:], like=da.isel(time=slice(0, 4)), weight="hann")
    np.testing.assert_allclose(fc.values[:4], np.asarray(first), rtol=1e-5, atol=1e-6)
    # without the flag the forecast differs: the model would have read the invented frame
    plain = xglacier.forecast(da.drop_vars("interpolated"), model, steps=4, stride=4)
    assert not np.allclose(plain.values, fc.values[:4])
    if chunked:
        np.testing.assert_array_equal(fc.values, xglacier.forecast(da, model, steps=6, stride=4).values)


def test_gaps_are_off_by_default_and_such_a_model_still_warns():
    assert SALSTM(preset="small").gaps is False and "missing_frame" not in SALSTM(preset="small").state_dict()
    da = quarterly(nt=8, ny=12, nx=12, gap=[5])
    with pytest.warns(InterpolatedInputWarning, match="gaps=True reads them as missing"):
        xglacier.forecast(da, small(SALSTM, gaps=False), steps=2)


def test_gap_source_never_interpolates_from_nan():
    """A NaN left in the frame before a window (outside what gather checks) is never spread into
    a hidden frame: a sample whose first frame was drawn keeps it."""
    from xglacier.forecasting.gaps import GapSource

    da = quarterly(nt=12)
    da[0, 3, 3] = np.nan
    ps = xglacier.patches(da, size=8, stride=8, n_in=4, n_out=4)  # nan="raise"
    # the window right after the NaN frame, over the NaN pixel
    later = np.flatnonzero((ps.plan.samples == [1, 0, 0]).all(axis=1))
    assert later.size == 1
    x, _, gaps = GapSource(ps, rate=1.0, seed=1).gather(np.repeat(later, 50))
    assert not np.isnan(x).any()
    assert not gaps[:, 0].any() and gaps[:, 1:].any()  # position 0 drawn: left as it was
