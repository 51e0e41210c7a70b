"""The VQ-VAE: encoder, vector quantizer, decoder (Keras 3 functional models), and the code interface.

`build_vqvae(config, image_size)` returns one functional model whose layers `encoder`, `quantizer` and
`decoder` can be used on their own; it maps images `(B, S, S, 3)` in [0, 1] to a dict:

- `reconstruction`  `(B, S, S, 3)` float32, linear output (not clipped)
- `vq_loss`, `perplexity`, `usage`  scalars from the quantizer
- `indices`         `(B, S/2**n, S/2**n, k)` int32 codes

Stage 2 (the prior) works on codes only, through two functions:

    indices = encode_indices(model, images)   # (B, H, W, k) int32
    images = decode_indices(model, indices)   # (B, S, S, 3) float32, clipped to [0, 1]

The shape follows the VQ-VAE paper and Sonnet's example: stride-2 convolutions with ReLU, a 3x3
convolution, residual blocks (ReLU, 3x3 conv, ReLU, 1x1 conv, add), then a 1x1 convolution to the latent
channels; the decoder mirrors it with transposed convolutions and ends linear. ReLU everywhere (LeakyReLU
gave loss spikes in earlier runs) and he_normal initialisation.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from argomlops.config import VQVAEConfig
from argomlops.trainer.quantizer import VectorQuantizer

_INIT = "he_normal"


def _residual_stack(x: Any, channels: int, hidden: int, blocks: int, name: str) -> Any:
    """`blocks` residual blocks ReLU-conv3x3-ReLU-conv1x1-add, then a ReLU."""
    for i in range(blocks):
        h = keras.layers.ReLU(name=f"{name}_res{i}_relu_a")(x)
        h = keras.layers.Conv2D(hidden, 3, padding="same", kernel_initializer=_INIT, name=f"{name}_res{i}_conv3")(h)
        h = keras.layers.ReLU(name=f"{name}_res{i}_relu_b")(h)
        h = keras.layers.Conv2D(channels, 1, kernel_initializer=_INIT, name=f"{name}_res{i}_conv1")(h)
        x = keras.layers.Add(name=f"{name}_res{i}_add")([x, h])
    return keras.layers.ReLU(name=f"{name}_res_out")(x)


def build_encoder(config: VQVAEConfig, image_size: int) -> keras.Model:
    """Images `(B, S, S, 3)` to latents `(B, S/2**n, S/2**n, latent_channels)`."""
    inputs = keras.Input((image_size, image_size, 3), name="images")
    # Centred on 0: images in [0, 1] are all-positive, and the small colour differences on top of the
    # common brightness are learnt much later from them (measured: desaturated reconstructions after 1200
    # steps on builtin:figures, 23.5 dB against 24.3 dB centred).
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="centre")(inputs)
    for i, filters in enumerate(config.encoder_channels):
        x = keras.layers.Conv2D(
            filters, 4, strides=2, padding="same", activation="relu", kernel_initializer=_INIT, name=f"down{i}"
        )(x)
    top = config.encoder_channels[-1]
    x = keras.layers.Conv2D(top, 3, padding="same", kernel_initializer=_INIT, name="enc_conv")(x)
    x = _residual_stack(x, top, config.residual_channels, config.residual_blocks, "enc")
    latent = config.latent
    x = keras.layers.Conv2D(latent, 1, kernel_initializer=_INIT, name="to_latent")(x)
    return keras.Model(inputs, x, name="encoder")


def build_decoder(config: VQVAEConfig, image_size: int) -> keras.Model:
    """Quantized latents `(B, S/2**n, S/2**n, latent_channels)` to images `(B, S, S, 3)`, linear."""
    side = image_size // 2 ** len(config.encoder_channels)
    latent = config.latent
    inputs = keras.Input((side, side, latent), name="latents")
    top = config.encoder_channels[-1]
    x = keras.layers.Conv2D(top, 3, padding="same", kernel_initializer=_INIT, name="dec_conv")(inputs)
    x = _residual_stack(x, top, config.residual_channels, config.residual_blocks, "dec")
    for i, filters in enumerate(reversed(config.encoder_channels[:-1])):
        x = keras.layers.Conv2DTranspose(
            filters, 4, strides=2, padding="same", activation="relu", kernel_initializer=_INIT, name=f"up{i}"
        )(x)
    x = keras.layers.Conv2DTranspose(3, 4, strides=2, padding="same", kernel_initializer=_INIT, name="to_rgb")(x)
    # Back from the encoder's centred range to [0, 1]; in float32, which the loss wants under mixed precision.
    x = keras.layers.Rescaling(0.5, offset=0.5, dtype="float32", name="rgb")(x)
    return keras.Model(inputs, x, name="decoder")


def build_quantizer(config: VQVAEConfig, seed: int = 0) -> VectorQuantizer:
    """The vector quantizer a VQ-VAE of `config` uses."""
    return VectorQuantizer(
        embedding_dim=config.embedding_dim,
        num_embeddings=config.num_embeddings,
        commitment_cost=config.commitment_cost,
        decay=config.decay,
        mode=config.quantizer,
        dead_code_threshold=config.dead_code_threshold,
        codes_per_position=config.codes_per_position,
        seed=seed,
        name="quantizer",
    )


def build_vqvae(config: VQVAEConfig, image_size: int, seed: int = 0) -> keras.Model:
    """The full VQ-VAE as one functional model (see the module docstring for its outputs)."""
    keras.utils.set_random_seed(seed)
    encoder = build_encoder(config, image_size)
    quantizer = build_quantizer(config, seed)
    decoder = build_decoder(config, image_size)
    images = keras.Input((image_size, image_size, 3), name="images")
    vq = quantizer(encoder(images))
    reconstruction = decoder(vq["quantize"])
    outputs = {
        "reconstruction": reconstruction,
        "vq_loss": vq["loss"],
        "perplexity": vq["perplexity"],
        "usage": vq["usage"],
        "indices": vq["encoding_indices"],
    }
    return keras.Model(images, outputs, name="vqvae")


def encode_indices(model: keras.Model, images: Any) -> np.ndarray:
    """Codes of `images` `(B, S, S, 3)` in [0, 1]: a `(B, H, W, k)` int32 array (no codebook update)."""
    latents = model.get_layer("encoder")(tf.convert_to_tensor(images, tf.float32), training=False)
    out = model.get_layer("quantizer")(latents, training=False)
    return np.asarray(out["encoding_indices"], dtype=np.int32)


def decode_indices(model: keras.Model, indices: Any) -> np.ndarray:
    """Images `(B, S, S, 3)` float32 in [0, 1] decoded from `(B, H, W, k)` codes."""
    quantizer: VectorQuantizer = model.get_layer("quantizer")
    latents = quantizer.lookup(tf.convert_to_tensor(indices, tf.int32))
    images = model.get_layer("decoder")(latents, training=False)
    return np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)


def code_grid_shape(config: VQVAEConfig, image_size: int) -> tuple[int, int, int]:
    """`(H, W, k)`: the shape of one image's codes."""
    side = image_size // 2 ** len(config.encoder_channels)
    return side, side, config.codes_per_position
