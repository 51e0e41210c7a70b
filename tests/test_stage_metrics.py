"""The stage runner's metric means: validation metrics are weighted by batch size."""

from __future__ import annotations

import tensorflow as tf

from argomlops.trainer.stage import _batch_size, _Mean


def test_a_short_last_batch_weighs_by_its_examples() -> None:
    mean = _Mean()
    full = (tf.zeros((32, 4, 4), tf.int32), tf.zeros((32, 2)))
    short = (tf.zeros((1, 4, 4), tf.int32), tf.zeros((1, 2)))
    mean.add({"loss": 1.0}, _batch_size(full))
    mean.add({"loss": 34.0}, _batch_size(short))
    # (32 * 1 + 1 * 34) / 33 = 2, where an unweighted mean of batches would say 17.5.
    assert mean.result("val_") == {"val_loss": 2.0}
    assert mean.count == 2


def test_unweighted_steps_average_plainly() -> None:
    mean = _Mean()
    for value in (1.0, 2.0, 6.0):
        mean.add({"mse": tf.constant(value)})
    assert mean.result() == {"mse": 3.0}
