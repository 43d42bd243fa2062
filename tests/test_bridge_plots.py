"""The bridges chapter's figures (sparsecirc.wst.bridge_plots) on synthetic runs."""
import matplotlib.pyplot as plt
import numpy as np
import pytest

from sparsecirc.core.train import History
from sparsecirc.wst import bridge_plots


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _history(n, start):
    decay = start * np.exp(-np.arange(n) / 10) + 1.0
    extra = {k: list(decay) for k in ("nmse_enc", "nmse_dec", "kl_d2s", "kl_s2d")}
    return History(step=list(range(n)), train_loss=list(decay + 2), val_step=[0, n - 1], val_loss=[4.0, 3.0],
                   extra=extra)


def test_training_curves_draw_every_term_of_every_run_on_log_axes():
    fig = bridge_plots.training_curves({"scratch": _history(80, 2000.0), "joint": _history(40, 5.0)}, smooth=5)
    left, middle, right = fig.axes
    assert left.get_yscale() == "log" and middle.get_yscale() == "log"  # a scratch run spans orders of magnitude
    assert len(left.lines) == 2 * 3 and len(middle.lines) == 2 * 2 and len(right.lines) == 2
    labels = [t.get_text() for t in left.get_legend().get_texts()]
    assert "sparse CE (scratch)" in labels and "sum NMSE, decoders (joint)" in labels
    assert len(left.lines[0].get_ydata()) == 80 - 5 + 1  # smoothed over 5 steps
