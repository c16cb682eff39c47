"""torch_threads: a fixed torch thread count for a block, restored afterwards."""

from __future__ import annotations

import pytest
import torch

from xglacier.errors import ParameterError
from xglacier.nn.threads import torch_threads


def test_restores_the_count_even_after_an_error():
    before = torch.get_num_threads()
    other = 2 if before == 1 else 1
    with pytest.raises(RuntimeError, match="inside"), torch_threads(other):
        assert torch.get_num_threads() == other
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_bad_counts_are_refused(bad):
    before = torch.get_num_threads()
    with pytest.raises(ParameterError, match="torch_threads: n"), torch_threads(bad):
        pass
    assert torch.get_num_threads() == before


def test_demo_refuses_a_bad_thread_count_before_any_work(tmp_path):
    from xglacier.demo import run_demo

    with pytest.raises(ParameterError, match="run_demo: threads"):
        run_demo(tmp_path / "out", threads=0)
    assert not (tmp_path / "out").exists()
