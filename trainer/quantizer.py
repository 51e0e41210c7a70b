"""The vector quantizer of the VQ-VAE: one registered Keras layer, EMA or loss-based codebook.

Input `(B, H, W, k*D)` is split into `k` slices of size `D` per position; every slice is replaced by its
nearest codebook vector (one codebook of `K` vectors shared by the `k` slices). The call returns a dict,
as Sonnet's `VectorQuantizerEMA` does:

- `quantize`          `(B, H, W, k*D)` nearest codes, with straight-through gradients to the input
- `loss`              scalar: `beta * commitment` (ema) or `codebook + beta * commitment` (loss)
- `perplexity`        scalar: exp(entropy) of the batch's code histogram (K = every code used evenly)
- `usage`             scalar: fraction of the K codes used at least once in the batch
- `encoding_indices`  `(B, H, W, k)` int32

EMA mode keeps per-code moving averages of assignment counts and of the assigned vectors (updated only
when `training=True`) and restarts "dead" codes on random encoder outputs of the batch. Randomness comes
from a stateless generator keyed by (seed, a counter weight), so it is saved with the weights and a
resumed run draws what an uninterrupted one would.

Under several replicas (`replicas.py`) there is still one codebook: the counts and sums of a training
step are summed over the replicas, restarts draw from the global batch's vectors, every replica computes
the same update and only the first replica's copy is written. Perplexity and usage of a training step
are those of the global batch, as on one device.
"""

from __future__ import annotations

from typing import Any, Literal

import keras
import tensorflow as tf

from argomlops.trainer.replicas import gather_global_rows, sum_over_replicas

# Every replica computes the same codebook update from the summed statistics: write the first's copy.
_SYNCED = "only_first_replica"


@keras.saving.register_keras_serializable(package="argomlops")
class VectorQuantizer(keras.layers.Layer):
    """Nearest-neighbour quantization of `k` slices of size `embedding_dim` per position."""

    def __init__(
        self,
        embedding_dim: int,
        num_embeddings: int,
        commitment_cost: float = 0.25,
        decay: float = 0.99,
        mode: Literal["ema", "loss"] = "ema",
        dead_code_threshold: float = 0.01,
        codes_per_position: int = 1,
        epsilon: float = 1e-5,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        # The codebook math needs float32 even when the rest of the model runs in float16.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if mode not in ("ema", "loss"):
            raise ValueError(f"mode must be 'ema' or 'loss', got {mode!r}")
        self.embedding_dim = embedding_dim
        self.num_embeddings = num_embeddings
        self.commitment_cost = commitment_cost
        self.decay = decay
        self.mode = mode
        self.dead_code_threshold = dead_code_threshold
        self.codes_per_position = codes_per_position
        self.epsilon = epsilon
        self.seed = seed

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        channels = input_shape[-1]
        if channels != self.embedding_dim * self.codes_per_position:
            raise ValueError(
                f"quantizer input has {channels} channels, expected codes_per_position*embedding_dim = "
                f"{self.codes_per_position}*{self.embedding_dim}"
            )
        ema = self.mode == "ema"
        shape = (self.embedding_dim, self.num_embeddings)
        init = keras.initializers.VarianceScaling(distribution="uniform", seed=self.seed)
        self.embeddings = self.add_weight(
            shape=shape, initializer=init, trainable=not ema, name="embeddings", aggregation=_SYNCED if ema else "none"
        )
        if ema:
            # With restarts on, every code starts dead: the first training step moves the codes onto
            # encoder outputs of the batch (a data-dependent init, so few codes stay unused). Without
            # restarts each code starts as if assigned once to its initial vector, so the first updates
            # neither divide by ~0 nor pull unused codes to the origin.
            init_mass = "zeros" if self.dead_code_threshold > 0 else "ones"
            self.ema_cluster_size = self.add_weight(
                shape=(self.num_embeddings,),
                initializer=init_mass,
                trainable=False,
                name="ema_cluster_size",
                aggregation=_SYNCED,
            )
            self.ema_dw = self.add_weight(
                shape=shape, initializer="zeros", trainable=False, name="ema_dw", aggregation=_SYNCED
            )
            self.ema_dw.assign(self.embeddings.value * self.ema_cluster_size.value[tf.newaxis, :])
            self.draws = self.add_weight(
                shape=(), initializer="zeros", dtype="int32", trainable=False, name="draws", aggregation=_SYNCED
            )

    def lookup(self, indices: tf.Tensor) -> tf.Tensor:
        """Codebook vectors of `(B, H, W, k)` indices, as a `(B, H, W, k*D)` tensor."""
        vectors = tf.gather(tf.transpose(self.embeddings), tf.cast(indices, tf.int32))  # (B, H, W, k, D)
        shape = tf.shape(vectors)
        return tf.reshape(vectors, tf.concat([shape[:-2], [self.codes_per_position * self.embedding_dim]], 0))

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        inputs = tf.cast(inputs, tf.float32)
        flat = tf.reshape(inputs, [-1, self.embedding_dim])  # (N, D), N = B*H*W*k
        codebook = tf.convert_to_tensor(self.embeddings)  # (D, K)
        distances = (
            tf.reduce_sum(flat**2, axis=1, keepdims=True)
            - 2.0 * tf.matmul(flat, codebook)
            + tf.reduce_sum(codebook**2, axis=0, keepdims=True)
        )  # (N, K)
        indices = tf.argmin(distances, axis=1, output_type=tf.int32)  # (N,)
        one_hot = tf.one_hot(indices, self.num_embeddings, dtype=tf.float32)  # (N, K)
        quantized = tf.reshape(tf.gather(tf.transpose(codebook), indices), tf.shape(inputs))

        # Summed over the replicas of a multi-replica step (the same tensor otherwise).
        counts = sum_over_replicas(tf.reduce_sum(one_hot, axis=0))  # (K,)
        if training and self.mode == "ema":
            self._update_ema(flat, one_hot, counts)

        commitment = tf.reduce_mean((tf.stop_gradient(quantized) - inputs) ** 2)
        if self.mode == "ema":
            loss = self.commitment_cost * commitment
        else:
            codebook_loss = tf.reduce_mean((quantized - tf.stop_gradient(inputs)) ** 2)
            loss = codebook_loss + self.commitment_cost * commitment

        probs = counts / tf.maximum(tf.reduce_sum(counts), 1.0)
        perplexity = tf.exp(-tf.reduce_sum(probs * tf.math.log(probs + 1e-10)))
        usage = tf.reduce_mean(tf.cast(counts > 0, tf.float32))
        grid = tf.concat([tf.shape(inputs)[:-1], [self.codes_per_position]], 0)
        return {
            # Straight-through estimator: forward the code, backward the identity.
            "quantize": inputs + tf.stop_gradient(quantized - inputs),
            "loss": loss,
            "perplexity": perplexity,
            "usage": usage,
            "encoding_indices": tf.reshape(indices, grid),
        }

    def _update_ema(self, flat: tf.Tensor, one_hot: tf.Tensor, counts: tf.Tensor) -> None:
        """Moving averages of the global batch's counts and sums per code, Laplace-smoothed; then restarts."""
        decay = self.decay
        sums = sum_over_replicas(tf.matmul(flat, one_hot, transpose_a=True))  # (D, K)
        cluster = self.ema_cluster_size * decay + counts * (1.0 - decay)
        dw = self.ema_dw * decay + sums * (1.0 - decay)
        total = tf.reduce_sum(cluster)
        # Laplace smoothing keeps codes with (almost) no assignments from dividing by zero.
        smoothed = (cluster + self.epsilon) / (total + self.num_embeddings * self.epsilon) * total
        embeddings = dw / smoothed[tf.newaxis, :]
        if self.dead_code_threshold > 0:
            cluster, dw, embeddings = self._restart_dead(flat, cluster, dw, embeddings)
        self.ema_cluster_size.assign(cluster)
        self.ema_dw.assign(dw)
        self.embeddings.assign(embeddings)

    def _restart_dead(
        self, flat: tf.Tensor, cluster: tf.Tensor, dw: tf.Tensor, embeddings: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Move codes whose EMA usage fell below the threshold onto random vectors of the (global) batch."""
        dead = cluster < self.dead_code_threshold  # (K,)
        seed = tf.stack([tf.constant(self.seed, tf.int32), self.draws.value])
        self.draws.assign_add(1)
        rows = sum_over_replicas(tf.shape(flat)[0])
        picks = tf.random.stateless_uniform([self.num_embeddings], seed=seed, maxval=rows, dtype=tf.int32)  # (K,)
        fresh = tf.transpose(gather_global_rows(flat, picks))  # (D, K)
        embeddings = tf.where(dead[tf.newaxis, :], fresh, embeddings)
        # A restarted code gets just the threshold's mass: if the next batches do not use it, it decays
        # below the threshold at once and is drawn again (as Jukebox does), so no code idles for long.
        mass = tf.fill(tf.shape(cluster), tf.constant(self.dead_code_threshold, tf.float32))
        cluster = tf.where(dead, mass, cluster)
        dw = tf.where(dead[tf.newaxis, :], fresh * mass[tf.newaxis, :], dw)
        return cluster, dw, embeddings

    def compute_output_spec(self, inputs: Any, training: bool | None = None) -> dict[str, keras.KerasTensor]:
        shape = inputs.shape
        return {
            "quantize": keras.KerasTensor(shape, dtype="float32"),
            "loss": keras.KerasTensor((), dtype="float32"),
            "perplexity": keras.KerasTensor((), dtype="float32"),
            "usage": keras.KerasTensor((), dtype="float32"),
            "encoding_indices": keras.KerasTensor((*shape[:-1], self.codes_per_position), dtype="int32"),
        }

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config.update(
            embedding_dim=self.embedding_dim,
            num_embeddings=self.num_embeddings,
            commitment_cost=self.commitment_cost,
            decay=self.decay,
            mode=self.mode,
            dead_code_threshold=self.dead_code_threshold,
            codes_per_position=self.codes_per_position,
            epsilon=self.epsilon,
            seed=self.seed,
        )
        return config
