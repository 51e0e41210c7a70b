"""The VQ-VAE model: shapes with k codes per position, the code interface, save/load, mixed precision + XLA."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from argomlops.config import VQVAEConfig
from argomlops.trainer.steps import make_optimizer, train_step
from argomlops.trainer.vqvae import build_vqvae, code_grid_shape, decode_indices, encode_indices
from argomlops.trainer.vqvae_stage import vqvae_metrics

SMALL = VQVAEConfig(
    encoder_channels=[8, 16], residual_blocks=1, residual_channels=8, embedding_dim=4, num_embeddings=16,
    latent_channels=8,
)  # fmt: skip


def _images(n: int = 3, size: int = 16) -> np.ndarray:
    return np.random.default_rng(1).random((n, size, size, 3), dtype=np.float32)


def test_shapes_with_two_codes_per_position() -> None:
    model = build_vqvae(SMALL, 16)
    out = model(_images(), training=False)
    assert out["reconstruction"].shape == (3, 16, 16, 3)
    assert out["indices"].shape == (3, 4, 4, 2) and out["indices"].dtype == tf.int32
    assert code_grid_shape(SMALL, 16) == (4, 4, 2)
    assert {"vq_loss", "perplexity", "usage"} <= set(out)
    # The residual stacks follow the paper: 3x3 then 1x1 convolutions added to their input.
    names = [layer.name for layer in model.get_layer("encoder").layers]
    assert "enc_res0_conv3" in names and "enc_res0_conv1" in names and "enc_res0_add" in names


def test_code_interface_matches_the_model() -> None:
    model = build_vqvae(SMALL, 16)
    images = _images()
    indices = encode_indices(model, images)
    assert indices.shape == (3, 4, 4, 2) and indices.dtype == np.int32
    np.testing.assert_array_equal(indices, model(images, training=False)["indices"].numpy())
    decoded = decode_indices(model, indices)
    expected = np.clip(model(images, training=False)["reconstruction"].numpy(), 0, 1)
    np.testing.assert_allclose(decoded, expected, atol=1e-5)


SAVE_SCRIPT = """
import sys, numpy as np, tensorflow as tf
from argomlops.config import VQVAEConfig
from argomlops.trainer.vqvae import build_vqvae, encode_indices
from argomlops.trainer.steps import make_optimizer, train_step
from argomlops.trainer.vqvae_stage import vqvae_metrics
model = build_vqvae(VQVAEConfig.model_validate_json(sys.argv[1]), 16, seed=4)
step_fn = train_step(model, make_optimizer(1e-3), vqvae_metrics(model))
step_fn(tf.constant(np.load(sys.argv[2])))  # one step, so the EMA codebook state is not the initial one
model.save(sys.argv[3])
images = np.load(sys.argv[4])
np.save(sys.argv[5], model(images, training=False)["reconstruction"].numpy())
np.save(sys.argv[6], encode_indices(model, images))
"""

LOAD_SCRIPT = """
import sys, numpy as np, keras
import argomlops.trainer.vqvae  # registers the quantizer
model = keras.models.load_model(sys.argv[1])
images = np.load(sys.argv[2])
np.save(sys.argv[3], model(images, training=False)["reconstruction"].numpy())
np.save(sys.argv[4], argomlops.trainer.vqvae.encode_indices(model, images))
"""


def _python(script: str, *args: object) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", script, *map(str, args)], check=True, timeout=120, env=env)


def test_model_keras_loads_identically_in_a_fresh_process(tmp_path: Path) -> None:
    # Both sides run in fresh processes: this test process's earlier tests may leave TensorFlow with
    # other kernels chosen (float differences of ~1e-7), which says nothing about saving and loading.
    np.save(tmp_path / "train.npy", _images())
    np.save(tmp_path / "images.npy", _images(5))
    model, images = tmp_path / "model.keras", tmp_path / "images.npy"
    _python(SAVE_SCRIPT, SMALL.model_dump_json(), tmp_path / "train.npy", model, images, tmp_path / "ref.npy",
            tmp_path / "ref_idx.npy")  # fmt: skip
    _python(LOAD_SCRIPT, model, images, tmp_path / "out.npy", tmp_path / "idx.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), np.load(tmp_path / "ref.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "idx.npy"), np.load(tmp_path / "ref_idx.npy"))
    assert len(np.unique(np.load(tmp_path / "idx.npy"))) > 1  # a trained, non-degenerate codebook


@pytest.fixture
def mixed_precision() -> Iterator[None]:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.usefixtures("mixed_precision")
def test_mixed_precision_and_xla_train_step_runs() -> None:
    model = build_vqvae(SMALL.model_copy(update={"quantizer": "loss"}), 16)
    optimizer = make_optimizer(1e-3)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.get_layer("quantizer").compute_dtype == "float32"
    assert model.get_layer("encoder").get_layer("down0").compute_dtype == "float16"
    step_fn = train_step(model, optimizer, vqvae_metrics(model))
    optimizer.build(model.trainable_variables)
    step = tf.function(step_fn, jit_compile=True)
    before = [w.numpy().copy() for w in model.trainable_weights]
    losses = [float(step(tf.constant(_images(4)))["loss"]) for _ in range(3)]
    assert all(np.isfinite(losses))
    assert model(_images(), training=False)["reconstruction"].dtype == tf.float32
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, model.trainable_weights, strict=True))


def test_cosine_schedule_warms_up_then_decays_to_its_floor() -> None:
    from argomlops.trainer.steps import COSINE_FLOOR

    optimizer = make_optimizer(1e-3, "cosine", total_steps=110, warmup_steps=10)
    optimizer.build([keras.Variable(np.zeros(2, np.float32))])

    def rate_at(step: int) -> float:
        optimizer.iterations.assign(step)  # the counter checkpoints keep: a resume continues the curve
        return float(optimizer.learning_rate)

    values = [rate_at(step) for step in (0, 5, 10, 60, 110)]
    assert values[0] == 0.0 and 0.0 < values[1] < values[2]
    assert values[2] == pytest.approx(1e-3) and values[3] < values[2]
    assert values[4] == pytest.approx(1e-3 * COSINE_FLOOR, rel=1e-3)
    assert float(make_optimizer(1e-3).learning_rate) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="unknown learning rate schedule"):
        make_optimizer(1e-3, "linear")
