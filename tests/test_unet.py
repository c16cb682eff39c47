"""U-Net architecture, combined binary models, Dice losses and the L1 penalty."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xglacier.errors import InputError, ParameterError
from xglacier.models import MODEL_CLASSES, CombinedBinary, SegmentationModel, UNet
from xglacier.nn.checkpoint import load_model, save_model
from xglacier.segmentation.losses import binary_dice_loss, dice_loss, l1_penalty, segmentation_loss

BANDS = ["blue", "green", "red", "nir08", "swir16", "swir22", "ndsi", "ndwi", "ndvi", "elevation", "slope"]
THREE = ["background", "clean_ice", "debris_covered_ice"]


def unet_parameters(c_in: int, n_out: int, depth: int, base: int) -> int:
    """Trainable parameters of the U-Net, counted by hand.

    Level i has c_i = base * 2**i channels (i = 0 .. depth - 1; the bottleneck is level
    depth). A 3x3 convolution from a to b channels has 9ab + b parameters, a 2x2
    transposed convolution 4ab + b, the 1x1 head c_0 n_out + n_out.

    - encoder level 0: 9 c_in base + base + 9 base^2 + base;
    - encoder level i >= 1 and the bottleneck (i = depth): 9 c_{i-1} c_i + 9 c_i^2 + 2 c_i
      = 13.5 base^2 4^i + 2 base 2^i;
    - decoder level i: up 4 (2 c_i) c_i + c_i, then 9 (2 c_i) c_i + c_i and 9 c_i^2 + c_i,
      = 35 base^2 4^i + 3 base 2^i, for i = 0 .. depth - 1.

    Summing the geometric series (sum_{i=1}^{D} 4^i = (4^(D+1) - 4) / 3, ...):
    """
    d, b = depth, base
    encoder = 9 * c_in * b + 9 * b * b + 2 * b
    encoder += 27 * b * b * (4 ** (d + 1) - 4) // 6 + 2 * b * (2 ** (d + 1) - 2)
    decoder = 35 * b * b * (4**d - 1) // 3 + 3 * b * (2**d - 1)
    return encoder + decoder + b * n_out + n_out


# -- architecture ----------------------------------------------------------------------------


def test_paper_preset_parameter_count_matches_the_hand_count():
    model = UNet(BANDS, THREE)  # the paper: depth 5, 16 base channels, dropout 0.3
    print(f"paper U-Net, 11 channels, 3 classes: {model.n_parameters():,} parameters")
    assert model.n_parameters() == unet_parameters(11, 3, 5, 16) == 7_776_787
    # the paper's 15 channels (Landsat 7 bands + indices + elevation + slope), binary head
    assert UNet([f"c{i}" for i in range(15)], ["background", "glacier"], binary_head=True
                ).n_parameters() == unet_parameters(15, 1, 5, 16)
    for depth, base in ((1, 2), (3, 8), (4, 5)):
        assert UNet(BANDS[:3], THREE, depth=depth, base_channels=base).n_parameters() == \
            unet_parameters(3, 3, depth, base)


def test_paper_preset_layers():
    model = UNet(BANDS, THREE)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    ups = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout2d)]
    assert len(model.down) == 5 and len(ups) == 5
    assert all(m.kernel_size == (3, 3) for m in convs[:-1]) and convs[-1].kernel_size == (1, 1)
    assert all(m.kernel_size == (2, 2) and m.stride == (2, 2) for m in ups)
    assert [m.out_channels for m in convs[:-1:2]] == [16, 32, 64, 128, 256, 512, 256, 128, 64, 32, 16]
    assert len(drops) == 11 and all(m.p == 0.3 for m in drops)
    assert model.pool.kernel_size == 2


@pytest.mark.parametrize("pad_mode", ["reflect", "replicate", "zeros"])
@pytest.mark.parametrize("shape", [(37, 53), (1, 1), (3, 130), (32, 32)])
def test_output_has_the_input_size(shape, pad_mode):
    torch.manual_seed(0)
    model = UNet(BANDS[:4], THREE, depth=3, base_channels=2, pad_mode=pad_mode).eval()
    x = torch.randn(2, 4, *shape)
    assert model(x).shape == (2, 3, *shape)
    p = model.predict_proba(x)
    assert p.shape == (2, 3, *shape)
    assert torch.allclose(p.sum(dim=1), torch.ones(2, *shape))


def test_padding_is_centred_and_cropped_back():
    torch.manual_seed(1)
    model = UNet(["a"], ["background", "glacier"], depth=2, base_channels=2, binary_head=True).eval()
    x = torch.randn(1, 1, 5, 7)  # padded to 8 x 8: 1 row above, 2 below, 0 left, 1 right
    manual = nn.functional.pad(x, (0, 1, 1, 2), mode="reflect")
    with torch.no_grad():
        assert torch.equal(model(x), model(manual)[..., 1:6, 0:7])
    assert model(x).shape == (1, 1, 5, 7)


def test_batch_norm_option_round_trips(tmp_path):
    torch.manual_seed(0)
    model = UNet(["a", "b"], THREE, depth=2, base_channels=4, batch_norm=True)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 10
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d) and m is not model.head)
    model.train()
    model(torch.randn(4, 2, 16, 16))  # updates the running statistics
    model.eval()
    x = torch.randn(3, 2, 13, 7)
    with torch.no_grad():  # eval mode: each sample independent of the batch it is in
        assert torch.allclose(model(x)[1:2], model(x[1:2]), atol=1e-6)
    save_model(model, tmp_path / "bn")
    loaded = load_model(tmp_path / "bn")
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_unet_errors_name_the_parameter():
    with pytest.raises(ParameterError, match="depth=0"):
        UNet(BANDS, THREE, depth=0)
    with pytest.raises(ParameterError, match=r"base_channels=2\.5"):
        UNet(BANDS, THREE, base_channels=2.5)
    with pytest.raises(ParameterError, match="dropout=1"):
        UNet(BANDS, THREE, dropout=1)
    with pytest.raises(ParameterError, match="pad_mode='circular'"):
        UNet(BANDS, THREE, pad_mode="circular")
    with pytest.raises(ParameterError, match="binary_head=True needs exactly two classes"):
        UNet(BANDS, THREE, binary_head=True)
    with pytest.raises(ParameterError, match=r"channels=.*has duplicates"):
        UNet(["a", "a"], THREE)
    with pytest.raises(ParameterError, match=r"std=.*must be > 0"):
        UNet(["a"], THREE, std=[0.0])
    model = UNet(BANDS[:2], THREE, depth=1, base_channels=2)
    with pytest.raises(InputError, match=r"expected \(batch, 2 channels \['blue', 'green'\]"):
        model(torch.zeros(1, 3, 4, 4))
    with pytest.raises(InputError, match="2 channels"):
        model.predict_proba(torch.zeros(3, 4, 4))


def test_config_rebuilds_and_normalisation_imputes_nan():
    model = UNet(["green", "elevation"], THREE, depth=2, base_channels=3, dropout=0.1,
                 mean=[0.4, 4500.0], std=[0.2, 500.0], patch_size=64, pad_mode="replicate")
    again = type(model)(**model.config)
    assert again.config == model.config and again.n_parameters() == model.n_parameters()
    x = torch.tensor([0.6, float("nan"), 5000.0, 4000.0]).view(1, 2, 2, 1)
    assert model.normalise(x).flatten().tolist() == pytest.approx([1.0, 0.0, 1.0, -1.0])
    assert "UNet" in MODEL_CLASSES and "CombinedBinary" in MODEL_CLASSES


# -- combined binary models --------------------------------------------------------------------


class Constant(SegmentationModel):
    """A binary model answering the same probability everywhere."""

    def __init__(self, channels, classes, p=0.5, **kw):
        super().__init__(channels, classes, binary_head=True, p=p, **{
            k: v for k, v in kw.items() if k != "binary_head"})
        self.logit = nn.Parameter(torch.logit(torch.tensor(float(p))))

    def forward(self, x):
        return self.logit.expand(x.shape[0], 1, *x.shape[2:])


@pytest.mark.parametrize(("rule", "c", "d", "expected"), [
    ("debris_first", 0.8, 0.3, [0.2 * 0.7, 0.8 * 0.7, 0.3]),
    ("debris_first", 0.9, 0.9, [0.01, 0.09, 0.9]),
    ("normalised", 0.8, 0.3, [v / 0.76 for v in (0.2 * 0.7, 0.8 * 0.7, 0.3 * 0.2)]),
    ("normalised", 1.0, 1.0, [0.0, 0.5, 0.5]),
])
def test_combined_rules_by_hand(rule, c, d, expected):
    clean = Constant(["a", "b"], ["background", "clean_ice"], p=c)
    debris = Constant(["a", "b"], ["background", "debris_covered_ice"], p=d)
    both = CombinedBinary(clean, debris, rule=rule)
    p = both.predict_proba(torch.full((1, 2, 3, 2), float("nan")))
    assert p.shape == (1, 3, 3, 2)
    assert p[0, :, 1, 1].tolist() == pytest.approx(expected, abs=1e-6)
    assert both.probabilities(both(torch.zeros(1, 2, 1, 1)))[0, :, 0, 0].tolist() == pytest.approx(
        expected, abs=1e-5)


def test_combined_refuses_parts_that_do_not_fit():
    clean = UNet(["a", "b"], ["background", "clean_ice"], depth=1, base_channels=2, binary_head=True)
    swapped = UNet(["b", "a"], ["background", "debris"], depth=1, base_channels=2, binary_head=True)
    with pytest.raises(ParameterError, match=r"channels \['a', 'b'\] differ from the debris model's "
                                             r"\['b', 'a'\]"):
        CombinedBinary(clean, swapped)
    with pytest.raises(ParameterError, match="debris model has classes"):
        CombinedBinary(clean, UNet(["a", "b"], THREE, depth=1, base_channels=2))
    with pytest.raises(ParameterError, match="rule='max'"):
        CombinedBinary(clean, clean, rule="max", classes=THREE)
    with pytest.raises(ParameterError, match="expected a SegmentationModel"):
        CombinedBinary(clean, nn.Conv2d(2, 1, 1))


def test_combined_survives_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    clean = UNet(["a", "b"], ["background", "clean_ice"], depth=2, base_channels=2, binary_head=True,
                 mean=[1.0, 2.0], std=[3.0, 4.0])
    debris = UNet(["a", "b"], ["background", "debris_covered_ice"], depth=1, base_channels=3,
                  mean=[-1.0, 0.5], std=[2.0, 1.0])  # a softmax head works too
    both = CombinedBinary(clean, debris, rule="normalised").eval()
    debris.set_statistics([-2.0, 0.5], [2.0, 1.0])  # the combined config follows its parts
    save_model(both, tmp_path / "both")
    loaded = load_model(tmp_path / "both", expect={"channels": ["a", "b"], "classes": both.classes})
    assert isinstance(loaded, CombinedBinary) and loaded.rule == "normalised"
    assert loaded.debris.config["mean"] == [-2.0, 0.5] and loaded.clean.config["std"] == [3.0, 4.0]
    x = torch.randn(2, 2, 9, 11)
    with torch.no_grad():
        assert torch.equal(loaded.predict_proba(x), both.predict_proba(x))


# -- losses ----------------------------------------------------------------------------------------


def onehot(target, n=3):
    return nn.functional.one_hot(target.clamp(max=n - 1), n).movedim(-1, 1).float()


@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 5.0], "generalised"])
def test_dice_is_zero_for_a_perfect_prediction(weights):
    target = torch.tensor([[[0, 0, 1], [2, 2, 255]], [[1, 1, 1], [0, 255, 255]]])
    saturated = torch.softmax(200.0 * onehot(target), dim=1)  # exactly one-hot in float32
    assert dice_loss(saturated, target, weights=weights).item() == 0.0
    assert dice_loss(saturated, target, weights=weights, smooth=0.0).item() == 0.0
    # a class absent from both the reference and the prediction scores perfectly too
    four = [*weights, 1.0] if isinstance(weights, list) else weights
    assert dice_loss(onehot(target, 4), target, weights=four).item() == 0.0
    model = UNet(["a"], THREE, depth=1, base_channels=2)
    loss_fn = segmentation_loss(model, loss="dice", class_weights=weights)
    assert loss_fn(200.0 * onehot(target), target).item() == 0.0
    binary = torch.tensor([[[0, 1], [1, 255]]])
    assert binary_dice_loss(binary.clamp(max=1).float(), binary).item() == 0.0


def test_dice_matches_a_hand_computed_value():
    # one sample, four labelled pixels (classes 0, 1, 1, 2) and one ignored
    target = torch.tensor([[[0, 1, 1, 2, 255]]])
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8],
                      [0.0, 0.0, 1.0]]).T.reshape(1, 3, 1, 5)
    # class 0: I = 0.7, P = 0.7 + 0.1 + 0.2 + 0.1 = 1.1, R = 1 -> D = (1.4 + 1) / (2.1 + 1)
    # class 1: I = 0.6 + 0.5 = 1.1, P = 1.4, R = 2       -> D = (2.2 + 1) / (3.4 + 1)
    # class 2: I = 0.8, P = 0.1 + 0.3 + 0.3 + 0.8 = 1.5, R = 1 -> D = (1.6 + 1) / (2.5 + 1)
    d = [2.4 / 3.1, 3.2 / 4.4, 2.6 / 3.5]
    assert dice_loss(p, target).item() == pytest.approx(1 - sum(d) / 3, abs=1e-6)
    assert dice_loss(p, target, weights=[1, 0, 3]).item() == pytest.approx(
        ((1 - d[0]) + 3 * (1 - d[2])) / 4, abs=1e-6)
    # generalised (Sudre): w = 1 / R^2 = (1, 1/4, 1), scaled so that sum w R = sum R = 4:
    # sum w R = 1 + 0.5 + 1 = 2.5 -> w = (1.6, 0.4, 1.6); the smoothing then counts in pixels
    w = [1.6, 0.4, 1.6]
    inter, total = [0.7, 1.1, 0.8], [2.1, 3.4, 2.5]
    num = 2 * sum(wi * i for wi, i in zip(w, inter, strict=True)) + 1
    den = sum(wi * t for wi, t in zip(w, total, strict=True)) + 1
    assert dice_loss(p, target, weights="generalised").item() == pytest.approx(1 - num / den, abs=1e-6)
    # binary: positive probability 0.2, 0.6, 0.5, 0.1 against 0, 1, 1, 0
    q = torch.tensor([[[0.2, 0.6, 0.5, 0.1, 0.9]]])
    assert binary_dice_loss(q, torch.tensor([[[0, 1, 1, 0, 255]]])).item() == pytest.approx(
        1 - (2 * 1.1 + 1) / (1.4 + 2 + 1), abs=1e-6)


def test_ignored_pixels_do_not_count():
    torch.manual_seed(0)
    target = torch.tensor([[[0, 1, 2, 255], [255, 2, 1, 0]]])
    p = torch.softmax(torch.randn(1, 3, 2, 4), dim=1)
    other = p.clone()
    other[..., 0, 3] = torch.tensor([0.0, 0.0, 1.0])
    other[..., 1, 0] = torch.tensor([1.0, 0.0, 0.0])
    for weights in (None, "generalised"):
        assert dice_loss(p, target, weights=weights).item() == dice_loss(other, target,
                                                                         weights=weights).item()
    every = torch.full((1, 2, 4), 255)
    assert dice_loss(p, every).item() == 0.0  # nothing labelled: no loss, no NaN
    model = UNet(["a"], THREE, depth=1, base_channels=2)
    assert segmentation_loss(model, loss="dice+ce")(torch.randn(1, 3, 2, 4), every).item() == 0.0


def test_loss_errors():
    p = torch.full((1, 3, 2, 2), 1 / 3)
    with pytest.raises(InputError, match=r"class indices \[3\] outside 0..2"):
        dice_loss(p, torch.tensor([[[0, 1], [2, 3]]]))
    with pytest.raises(InputError, match="expected integer class indices"):
        dice_loss(p, torch.zeros(1, 2, 2))
    with pytest.raises(InputError, match=r"expected \(batch, class, y, x\) and \(batch, y, x\)"):
        dice_loss(p, torch.zeros(1, 3, 2, dtype=torch.long))
    with pytest.raises(ParameterError, match=r"weights=.*one per class"):
        dice_loss(p, torch.zeros(1, 2, 2, dtype=torch.long), weights=[1.0, 2.0])
    with pytest.raises(ParameterError, match="smooth=-1"):
        dice_loss(p, torch.zeros(1, 2, 2, dtype=torch.long), smooth=-1)
    binary = UNet(["a"], ["background", "glacier"], depth=1, base_channels=2, binary_head=True)
    with pytest.raises(ParameterError, match=r"class_weights=.*binary-head"):
        segmentation_loss(binary, class_weights=[1.0, 2.0])
    with pytest.raises(ParameterError, match="'generalised' is a Dice weighting"):
        segmentation_loss(UNet(["a"], THREE, depth=1, base_channels=2), loss="ce",
                          class_weights="generalised")
    with pytest.raises(ParameterError, match="loss='focal'"):
        segmentation_loss(binary, loss="focal")
    with pytest.raises(ParameterError, match="lam=-1"):
        l1_penalty(binary, lam=-1)


def test_cross_entropy_matches_torch_without_ignored_pixels():
    torch.manual_seed(2)
    model = UNet(["a"], THREE, depth=1, base_channels=2)
    logits = torch.randn(2, 3, 3, 3)
    target = torch.randint(0, 3, (2, 3, 3))
    target[0, 0, 0] = 255
    keep = target != 255
    expected = nn.functional.cross_entropy(logits.movedim(1, -1)[keep], target[keep])
    got = segmentation_loss(model, loss="ce")(logits, target).item()
    assert got == pytest.approx(expected.item(), rel=1e-6)
    binary = UNet(["a"], ["background", "glacier"], depth=1, base_channels=2, binary_head=True)
    t2 = target.clamp(max=1)
    t2[0, 0, 0] = 255
    expected = nn.functional.binary_cross_entropy_with_logits(logits[:, 0][keep], t2[keep].float())
    got = segmentation_loss(binary, loss="ce")(logits[:, :1], t2).item()
    assert got == pytest.approx(expected.item(), rel=1e-6)


def test_l1_penalty_changes_the_gradient():
    torch.manual_seed(0)
    model = UNet(["a", "b"], THREE, depth=1, base_channels=2, dropout=0.0)
    x = torch.randn(2, 2, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    loss_fn = segmentation_loss(model, loss="dice")

    def grads(lam):
        model.zero_grad()
        (loss_fn(model(x), target) + l1_penalty(model, lam=lam)).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain, penalised = grads(0.0), grads(5e-4)
    weights = {n for n, p in model.named_parameters() if p.ndim > 1}
    assert weights and all(not torch.equal(plain[n], penalised[n]) for n in weights)
    for n, p in model.named_parameters():
        extra = 5e-4 * torch.sign(p.detach()) if n in weights else torch.zeros_like(p)
        assert torch.allclose(penalised[n] - plain[n], extra, atol=1e-7), n
    total = sum(p.abs().sum() for n, p in model.named_parameters() if n in weights)
    assert l1_penalty(model, lam=5e-4).item() == pytest.approx(5e-4 * total.item(), rel=1e-6)
