"""Training-curve figure from the per-epoch CSV written by rgbpose train."""

import math

import pytest

from rgbpose.io import BadSampleError
from rgbpose.report import plot_training_curves, read_train_log

CSV = """epoch,iters,lr,train_loss,train_top1,val_top1,val_top5,val_mean_class,time_s
1,15,0.4,3.0,0.1,,,,4.0
2,30,0.2,2.0,0.3,0.25,0.9,0.25,4.1
"""


def test_read_train_log_values_and_missing_validation(tmp_path):
    (tmp_path / "log.csv").write_text(CSV)
    log = read_train_log(tmp_path / "log.csv")
    assert log["epoch"] == [1.0, 2.0] and log["train_loss"] == [3.0, 2.0]
    assert math.isnan(log["val_top1"][0]) and log["val_top1"][1] == 0.25


def test_plot_training_curves_writes_png(tmp_path):
    (tmp_path / "a.csv").write_text(CSV)
    plot_training_curves([tmp_path / "a.csv", tmp_path / "a.csv"], tmp_path / "c.png", ["x", "y"])
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_log_names_file(tmp_path):
    (tmp_path / "bad.csv").write_text("epoch,loss\n1,2\n")
    with pytest.raises(BadSampleError, match=r"bad\.csv: training log lacks columns"):
        read_train_log(tmp_path / "bad.csv")
