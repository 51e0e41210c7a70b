"""The vector quantizer layer: nearest codes, k codes per position, EMA updates, restarts, losses."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from argomlops.trainer.quantizer import VectorQuantizer


def _layer(codebook: np.ndarray, **kwargs: object) -> VectorQuantizer:
    """A quantizer whose codebook (D, K) is set to `codebook`."""
    dim, count = codebook.shape
    layer = VectorQuantizer(embedding_dim=dim, num_embeddings=count, **kwargs)  # type: ignore[arg-type]
    layer.build((None, 1, 1, dim * int(kwargs.get("codes_per_position", 1))))  # type: ignore[call-overload]
    layer.embeddings.assign(codebook)
    if layer.mode == "ema":
        layer.ema_cluster_size.assign(np.ones(count, np.float32))
        layer.ema_dw.assign(codebook)
    return layer


CODEBOOK = np.array([[0.0, 1.0, 0.0, 5.0], [0.0, 0.0, 1.0, 5.0]], np.float32)  # D=2, K=4


def test_nearest_code_for_each_of_k_slices() -> None:
    layer = _layer(CODEBOOK, codes_per_position=2, dead_code_threshold=0.0)
    # (B=1, H=1, W=2, k*D=4): slices near codes (1, 2) at the first position and (3, 0) at the second.
    x = np.array([[[[0.9, 0.1, 0.1, 0.8], [4.0, 4.5, -0.2, 0.1]]]], np.float32)
    out = layer(x, training=False)
    assert out["encoding_indices"].dtype == tf.int32
    assert out["encoding_indices"].numpy().tolist() == [[[[1, 2], [3, 0]]]]
    expected = np.array([[[[1, 0, 0, 1], [5, 5, 0, 0]]]], np.float32)
    np.testing.assert_allclose(out["quantize"].numpy(), expected)
    np.testing.assert_allclose(layer.lookup(out["encoding_indices"]).numpy(), expected)


def test_straight_through_gradient_and_loss_values() -> None:
    layer = _layer(CODEBOOK, mode="loss", commitment_cost=0.25)
    x = tf.constant([[[[0.9, 0.1]]]])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        out = layer(x, training=True)
        total = tf.reduce_sum(out["quantize"] * 3.0)
    np.testing.assert_allclose(tape.gradient(total, x).numpy(), np.full((1, 1, 1, 2), 3.0))
    # Distance to code 1 = (0.1^2 + 0.1^2) / 2 per element; loss = codebook + beta * commitment.
    mse = (0.01 + 0.01) / 2
    assert float(out["loss"]) == pytest.approx(mse * 1.25, rel=1e-5)
    # The loss variant trains the codebook through the codebook loss.
    grad = tape.gradient(out["loss"], layer.embeddings)
    assert grad is not None and np.abs(grad.numpy()[:, 1]).sum() > 0


def test_ema_updates_only_in_training_and_moves_codes_to_their_mean() -> None:
    layer = _layer(CODEBOOK, decay=0.5, dead_code_threshold=0.0)
    x = np.array([[[[1.2, 0.2], [1.0, -0.2]]]], np.float32)  # both nearest to code 1 = (1, 0)
    layer(x, training=False)
    np.testing.assert_allclose(layer.embeddings.numpy(), CODEBOOK)
    layer(x, training=True)
    moved = layer.embeddings.numpy()
    # Code 1: EMA of counts 0.5*1 + 0.5*2 = 1.5, of sums 0.5*(1,0) + 0.5*(2.2,0) = (1.6,0) -> (1.0667, 0).
    np.testing.assert_allclose(moved[:, 1], [1.6 / 1.5, 0.0], atol=1e-3)
    np.testing.assert_allclose(moved[:, 0], CODEBOOK[:, 0], atol=1e-3)  # unused codes stay
    assert float(layer.ema_cluster_size[1]) == pytest.approx(1.5)


def test_dead_codes_restart_on_batch_vectors() -> None:
    layer = _layer(CODEBOOK, decay=0.5, dead_code_threshold=0.6)
    layer.ema_cluster_size.assign([1.0, 1.0, 1.0, 0.1])  # code 3 is dying and is never picked below
    x = np.array([[[[0.1, 0.1], [0.9, 0.0], [0.0, 0.9]]]], np.float32)
    layer(x, training=True)
    moved = layer.embeddings.numpy()
    vectors = x.reshape(-1, 2)
    # Code 3 now sits exactly on one of the batch's vectors; code 0..2 were used or above threshold.
    assert any(np.allclose(moved[:, 3], v) for v in vectors)
    assert int(layer.draws.numpy()) == 1


def test_perplexity_and_usage() -> None:
    layer = _layer(CODEBOOK, dead_code_threshold=0.0)
    same = np.zeros((2, 3, 3, 2), np.float32)  # every vector on code 0
    out = layer(same, training=False)
    assert float(out["perplexity"]) == pytest.approx(1.0)
    assert float(out["usage"]) == pytest.approx(0.25)
    spread = np.array([[[[0, 0], [1, 0], [0, 1], [5, 5]]]], np.float32)
    out = layer(spread, training=False)
    assert float(out["perplexity"]) == pytest.approx(4.0, rel=1e-4)
    assert float(out["usage"]) == pytest.approx(1.0)


def test_config_round_trip_and_same_seed_same_result() -> None:
    layer = VectorQuantizer(embedding_dim=4, num_embeddings=16, mode="ema", codes_per_position=2, seed=3, decay=0.9)
    copy = VectorQuantizer.from_config(layer.get_config())
    assert copy.get_config() == layer.get_config()
    assert keras.saving.get_registered_name(VectorQuantizer) == "argomlops>VectorQuantizer"
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype(np.float32)
    a, b = layer(x, training=True), copy(x, training=True)  # codes start dead: both restart with seed 3
    np.testing.assert_array_equal(a["encoding_indices"].numpy(), b["encoding_indices"].numpy())
    np.testing.assert_array_equal(layer.embeddings.numpy(), copy.embeddings.numpy())


def test_wrong_channel_count_is_refused() -> None:
    layer = VectorQuantizer(embedding_dim=4, num_embeddings=8, codes_per_position=2)
    with pytest.raises(ValueError, match="expected codes_per_position"):
        layer.build((None, 2, 2, 6))
