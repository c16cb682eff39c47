"""SA-LSTM-H's fed-back frame: squashed by default, and old checkpoints rebuilt as trained."""

from __future__ import annotations

import json

import pytest
import torch

import xglacier
from xglacier.errors import ParameterError
from xglacier.models import SALSTM


def loud(feedback: str) -> SALSTM:
    """A small SA-LSTM-H whose head amplifies: what a diverging training run produces."""
    torch.manual_seed(0)
    m = SALSTM(preset="small", patch_size=8, hidden=64, heads=4, n_out=6, feedback=feedback).eval()
    with torch.no_grad():
        m.head.weight.mul_(300.0)
    return m


def test_tanh_feedback_keeps_the_recursion_bounded():
    x = torch.randn(3, 4, 8, 8)
    with torch.no_grad():
        lin, tanh = loud("linear")(x), loud("tanh")(x)
    # the first lead does not depend on the feedback
    torch.testing.assert_close(lin[:, 0], tanh[:, 0])
    step = lambda out: out.abs().amax(dim=(0, 2, 3))  # noqa: E731  largest value per lead
    # fed back as it is, each step amplifies the last
    assert step(lin)[-1] > 1e3 * step(lin)[0]
    # squashed, every state lies in [-1, 1], so no lead can exceed the bound that the
    # attention's value and output projections and the head put on states in [-1, 1]
    m = loud("tanh")
    with torch.no_grad():
        h = m.hidden if hasattr(m, "hidden") else m.config["hidden"]
        att = m.attention
        w_v, b_v = att.in_proj_weight[2 * h:], att.in_proj_bias[2 * h:]
        v_max = float((w_v.abs().sum(1) + b_v.abs()).max())
        a_max = float((att.out_proj.weight.abs().sum(1) * v_max + att.out_proj.bias.abs()).max())
        bound = float((m.head.weight.abs().sum(1) * a_max + m.head.bias.abs()).max())
    assert float(step(tanh).max()) <= bound


def test_a_checkpoint_from_before_the_keyword_is_rebuilt_linear(tmp_path):
    m = loud("linear")
    path = xglacier.save_model(m, tmp_path / "old")
    meta = json.loads(path.read_text())
    del meta["config"]["feedback"]  # as written before the keyword existed
    path.write_text(json.dumps(meta))
    back = xglacier.load_model(path)
    assert back.feedback == "linear"
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(back.eval()(x), m(x))
    # a new checkpoint keeps its own setting
    assert xglacier.load_model(xglacier.save_model(loud("tanh"), tmp_path / "new")).feedback == "tanh"


def test_bad_feedback():
    with pytest.raises(ParameterError, match="SALSTM: feedback"):
        SALSTM(preset="small", feedback="sigmoid")
