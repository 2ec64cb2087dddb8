"""TensorBoard logs: a short run's event file, read back with tensorboard's EventAccumulator,
holds the same loss and test-loss values as metrics.jsonl and the same sample grid as the PNG."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator  # the dev extra has it

from ncsn.training import read_metrics, train
from test_train_support import tiny_config


def test_event_file_holds_the_logged_scalars_and_the_sample_grid(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(training={"n_iters": 4, "log_freq": 2, "test_freq": 2, "sample_freq": 4,
                                "snapshot_freq": 4}), run, progress=False)
    events = event_accumulator.EventAccumulator(
        str(run / "tensorboard"), size_guidance={event_accumulator.IMAGES: 0}).Reload()
    assert {"loss", "test_loss"} <= set(events.Tags()["scalars"])
    assert "world_size" not in events.Tags()["scalars"]  # start/resume events are not series
    for key in ("loss", "test_loss"):
        steps, values = read_metrics(run / "metrics.jsonl", key)
        assert steps == [2, 4]
        logged = events.Scalars(key)
        assert [e.step for e in logged] == steps
        np.testing.assert_allclose([e.value for e in logged], values, rtol=1e-6)

    (grid_event,) = events.Images("samples")
    assert grid_event.step == 4
    from_tensorboard = np.asarray(Image.open(io.BytesIO(grid_event.encoded_image_string)))
    from_png = np.asarray(Image.open(run / "samples" / "step_00000004.png"))
    height, width = from_png.shape[:2]
    assert (grid_event.height, grid_event.width) == (height, width)
    # TensorBoard stores grey grids as RGB: every channel equals the grey PNG
    np.testing.assert_array_equal(
        from_tensorboard, np.broadcast_to(from_png.reshape(height, width, -1),
                                          from_tensorboard.shape))
