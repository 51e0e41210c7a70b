"""The gated PixelCNN prior over VQ-VAE code grids (van den Oord et al. 2016, without the blind spot).

A code grid has shape (B, H, W, k): k codebook indices per latent position. They are modelled in raster
order over positions and, within a position, in code order 0..k-1, so code j at position p is predicted
from every code at earlier positions and codes 0..j-1 at p.

How the ordering is enforced:
1. The vertical stack at row i sees input rows <= i (all columns within its reach); it reaches the
   horizontal stack only shifted down one row, so the horizontal stack at row i gets rows < i from it.
   Growing in both column directions is what removes the original PixelCNN's blind spot.
2. The horizontal stack at (i, j) sees columns < j of the input in the first block (mask type A: the
   current position is hidden entirely, all k codes of it) and columns <= j of the previous block after
   that (type B), plus a residual connection.
3. The head adds, for code j, a projection of the embeddings of codes 0..j-1 at the same position
   (a block-triangular masked dense), so within-position order needs no channel masks in the stacks.

Dilation (`dilations`, cycled over the blocks after the first) widens what a block sees without more
layers: a block of dilation d looks at rows i - r*d, ..., i (stride d) in the vertical stack and
columns j - r*d, ..., j in the horizontal one, which keeps the order above. With six 3x3 blocks
dilated 1, 2, 4, ... the vertical stack covers a 16x16 code grid instead of six rows of it.

The layers also expose their pieces one row or one position at a time (`GatedBlock.vertical_row`,
`GatedBlock.horizontal_at`, `GatedPixelCNN.head`) so that the sampler in `sampler.py` computes each
activation once instead of running the whole model per code.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from argomlops.config import PixelCNNConfig

PACKAGE = "argomlops"


def gate(x: Any) -> Any:
    """tanh(a) * sigmoid(b) of the two halves of the last axis (the gated activation unit)."""
    a, b = ops.split(x, 2, axis=-1)
    return ops.tanh(a) * ops.sigmoid(b)


def _shift_down(x: Any) -> Any:
    """Move every row one down (row 0 becomes zeros) so row i only carries rows < i."""
    return ops.pad(x, [[0, 0], [1, 0], [0, 0], [0, 0]])[:, :-1]


@keras.saving.register_keras_serializable(package=PACKAGE)
class GatedBlock(keras.layers.Layer):
    """One gated layer of both stacks: returns (vertical output, vertical pre-activation, horizontal output).

    Args:
        filters: channels of each stack.
        kernel_size: odd kernel size n; the vertical kernel is (n//2 + 1, n), the horizontal (1, n//2 + 1).
        mask_type: "A" for the first block (the horizontal stack does not see the current position),
            "B" after it (it does, through the previous block's features at this position).
        condition_size: length of the conditioning vector (0 = unconditional).
        dilation: spacing d of the kernel taps along rows and columns (type A blocks take 1).
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        mask_type: str = "B",
        condition_size: int = 0,
        dilation: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if dilation < 1 or (mask_type == "A" and dilation != 1):
            raise ValueError(f"dilation must be >= 1, and 1 for a type A block; got {dilation}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.mask_type = mask_type
        self.condition_size = condition_size
        self.dilation = dilation
        reach = kernel_size // 2
        self.reach = reach
        self.span = reach * dilation  # how far the taps reach: rows above, columns to each side
        self.vertical_conv = keras.layers.Conv2D(2 * filters, (reach + 1, kernel_size), name="vertical")
        self.horizontal_conv = keras.layers.Conv2D(2 * filters, (1, reach + 1), name="horizontal")
        self.link = keras.layers.Conv2D(2 * filters, 1, name="link")
        self.residual = keras.layers.Conv2D(filters, 1, name="residual")
        if condition_size:
            self.vertical_condition = keras.layers.Dense(2 * filters, use_bias=False, name="vertical_condition")
            self.horizontal_condition = keras.layers.Dense(2 * filters, use_bias=False, name="horizontal_condition")

    def build(self, input_shape: Any) -> None:
        channels = input_shape[-1]
        self.vertical_conv.build((None, None, None, channels))
        self.horizontal_conv.build((None, None, None, channels))
        self.link.build((None, None, None, 2 * self.filters))
        self.residual.build((None, None, None, self.filters))
        if self.condition_size:
            self.vertical_condition.build((None, self.condition_size))
            self.horizontal_condition.build((None, self.condition_size))
        self.built = True

    def _condition(self, layer: keras.layers.Layer, condition: Any) -> Any:
        return layer(condition)[:, None, None, :]  # (B, 1, 1, 2F)

    @staticmethod
    def _conv(x: Any, layer: keras.layers.Layer, dilation: tuple[int, int]) -> Any:
        """`layer`'s kernel and bias applied with `dilation` ("valid"): the full model and the sampler's
        gathered slabs use the same weights with different tap spacings."""
        kernel = ops.cast(layer.kernel, x.dtype)
        return ops.conv(x, kernel, padding="valid", dilation_rate=dilation) + ops.cast(layer.bias, x.dtype)

    def vertical(self, v: Any, condition: Any = None) -> tuple[Any, Any]:
        """Vertical stack: (output, pre-activation); row i of both depends on input rows <= i only."""
        s, d = self.span, self.dilation
        pre = self._conv(ops.pad(v, [[0, 0], [s, 0], [s, s], [0, 0]]), self.vertical_conv, (d, d))  # (B, H, W, 2F)
        if self.condition_size:
            pre = pre + self._condition(self.vertical_condition, condition)
        return gate(pre), pre

    def vertical_row(self, slab: Any, condition: Any = None) -> Any:
        """Pre-activation (B, 1, W, 2F) of row i from the input rows it sees, i-r*d, ..., i (B, r+1, W, C)."""
        s = self.span
        pre = self._conv(ops.pad(slab, [[0, 0], [0, 0], [s, s], [0, 0]]), self.vertical_conv, (1, self.dilation))
        if self.condition_size:
            pre = pre + self._condition(self.vertical_condition, condition)
        return pre

    def horizontal(self, h: Any, link_input: Any, condition: Any = None) -> Any:
        """Horizontal stack on whole rows; `link_input` is the vertical pre-activation already shifted down."""
        r = self.reach
        if self.mask_type == "A":
            # One more column of left padding and the last output dropped: column j sees j-r-1 .. j-1.
            pre = self._conv(ops.pad(h, [[0, 0], [0, 0], [r + 1, 0], [0, 0]]), self.horizontal_conv, (1, 1))
            pre = pre[:, :, :-1]
        else:
            # Column j sees j-r*d, ..., j.
            padded = ops.pad(h, [[0, 0], [0, 0], [self.span, 0], [0, 0]])
            pre = self._conv(padded, self.horizontal_conv, (1, self.dilation))
        return self._horizontal_out(pre, link_input, h, condition)

    def horizontal_at(self, slab: Any, link_input: Any, condition: Any = None) -> Any:
        """Output (B, 1, 1, F) at one position from the r+1 columns it sees (B, 1, r+1, C).

        Those are columns j-r-1 .. j-1 of the input for type A, j-r*d, ..., j of the previous block for type B.
        """
        pre = self._conv(slab, self.horizontal_conv, (1, 1))  # (B, 1, 1, 2F)
        return self._horizontal_out(pre, link_input, slab[:, :, -1:], condition)

    def _horizontal_out(self, pre: Any, link_input: Any, h: Any, condition: Any) -> Any:
        pre = pre + self.link(link_input)
        if self.condition_size:
            pre = pre + self._condition(self.horizontal_condition, condition)
        out = self.residual(gate(pre))
        return out if self.mask_type == "A" else h + out

    def call(self, v: Any, h: Any, condition: Any = None) -> tuple[Any, Any, Any]:
        v_out, v_pre = self.vertical(v, condition)
        return v_out, v_pre, self.horizontal(h, _shift_down(v_pre), condition)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            mask_type=self.mask_type,
            condition_size=self.condition_size,
            dilation=self.dilation,
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class GatedPixelCNN(keras.layers.Layer):
    """Codes (B, H, W, k) int32 [+ condition (B, T)] → logits (B, H, W, k, K) float32.

    Args:
        num_embeddings: K, the codebook size of the VQ-VAE.
        codes_per_position: k.
        filters: channels of the stacks.
        layers: gated blocks after the first (type A) block.
        kernel_size: odd kernel size of the blocks.
        embedding_dim: size of the learned embedding of each input code.
        condition_size: length of the conditioning vector (0 = unconditional).
        dilations: dilation of the blocks after the first, cycled (block i takes dilations[(i-1) % n]).
    """

    def __init__(
        self,
        num_embeddings: int,
        codes_per_position: int = 1,
        filters: int = 64,
        layers: int = 6,
        kernel_size: int = 3,
        embedding_dim: int = 32,
        condition_size: int = 0,
        dilations: tuple[int, ...] | list[int] = (1,),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dilations = tuple(int(d) for d in dilations) or (1,)
        self.num_embeddings = num_embeddings
        self.codes_per_position = codes_per_position
        self.filters = filters
        self.num_layers = layers
        self.kernel_size = kernel_size
        self.embedding_dim = embedding_dim
        self.condition_size = condition_size
        self.embedding = keras.layers.Embedding(num_embeddings, embedding_dim, name="embedding")
        self.blocks = [
            GatedBlock(
                filters,
                kernel_size,
                "A" if i == 0 else "B",
                condition_size,
                dilation=1 if i == 0 else self.dilations[(i - 1) % len(self.dilations)],
                name=f"block_{i}",
            )
            for i in range(layers + 1)
        ]
        self.features = keras.layers.Dense(filters, name="features")
        self.logits = keras.layers.Dense(num_embeddings, dtype="float32", name="logits")

    def build(self, input_shape: Any) -> None:
        k, e, f = self.codes_per_position, self.embedding_dim, self.filters
        self.embedding.build((None,))
        for i, block in enumerate(self.blocks):
            block.build((None, None, None, k * e if i == 0 else f))
        self.features.build((None, f))
        self.logits.build((None, f))
        if k > 1:
            # Code j at a position may see the embeddings of codes 0..j-1 there: strictly block-lower.
            self.within = self.add_weight(shape=(k * e, k * f), initializer="glorot_uniform", name="within_position")
            mask = np.zeros((k * e, k * f), dtype="float32")
            for j in range(k):
                mask[: j * e, j * f : (j + 1) * f] = 1.0
            self.within_mask = mask
        self.built = True

    def embed(self, codes: Any) -> Any:
        """(…, k) int codes → (…, k * E) concatenated embeddings."""
        embedded = self.embedding(codes)  # (…, k, E)
        shape = ops.shape(embedded)
        return ops.reshape(embedded, (*shape[:-2], self.codes_per_position * self.embedding_dim))

    def vertical_links(self, x: Any, condition: Any = None) -> list[Any]:
        """For every block, its vertical pre-activation shifted down: what row i of the horizontal stack gets."""
        links = []
        v = x
        for block in self.blocks:
            v, pre = block.vertical(v, condition)
            links.append(_shift_down(pre))
        return links

    def horizontal_rows(self, x: Any, links: list[Any], condition: Any = None) -> Any:
        """The horizontal stack over the given rows of the embedded input, given their vertical links."""
        h = x
        for block, link in zip(self.blocks, links, strict=True):
            h = block.horizontal(h, link, condition)
        return h

    def head(self, features: Any, embedded: Any) -> Any:
        """(…, F) stack features and (…, k*E) embedded codes of the same positions → (…, k, K) logits."""
        k, f = self.codes_per_position, self.filters
        z = self.features(ops.relu(features))[..., None, :]  # (…, 1, F)
        if k > 1:
            kernel = ops.cast(self.within * self.within_mask, embedded.dtype)
            within = ops.matmul(embedded, kernel)  # (…, k*F)
            shape = ops.shape(within)
            z = z + ops.reshape(within, (*shape[:-1], k, f))
        return self.logits(ops.relu(z))

    def call(self, codes: Any, condition: Any = None) -> Any:
        x = self.embed(codes)  # (B, H, W, k*E)
        features = self.horizontal_rows(x, self.vertical_links(x, condition), condition)
        return self.head(features, x)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_embeddings=self.num_embeddings,
            codes_per_position=self.codes_per_position,
            filters=self.filters,
            layers=self.num_layers,
            kernel_size=self.kernel_size,
            embedding_dim=self.embedding_dim,
            condition_size=self.condition_size,
            dilations=list(self.dilations),
        )
        return config


def build_pixelcnn(
    config: PixelCNNConfig, grid: tuple[int, int], num_embeddings: int, codes_per_position: int = 1
) -> keras.Model:
    """The prior as a Keras model: inputs `codes` (B, H, W, k) [and `tags` (B, T)], output logits (B, H, W, k, K).

    Args:
        config: `models.pixelcnn` of the run config.
        grid: (H, W) of the VQ-VAE's latent grid.
        num_embeddings: K of the VQ-VAE codebook.
        codes_per_position: k of the VQ-VAE.
    """
    height, width = grid
    codes = keras.Input((height, width, codes_per_position), dtype="int32", name="codes")
    core = GatedPixelCNN(
        num_embeddings,
        codes_per_position,
        filters=config.filters,
        layers=config.layers,
        kernel_size=config.kernel_size,
        embedding_dim=config.embedding_dim,
        condition_size=len(config.condition_on_tags),
        dilations=config.dilations,
        name="gated_pixelcnn",
    )
    if config.condition_on_tags:
        tags = keras.Input((len(config.condition_on_tags),), dtype="float32", name="tags")
        return keras.Model({"codes": codes, "tags": tags}, core(codes, tags), name="pixelcnn")
    return keras.Model(codes, core(codes), name="pixelcnn")


def core_of(model: keras.Model) -> GatedPixelCNN:
    """The `GatedPixelCNN` layer inside a model built by `build_pixelcnn` (or loaded from model.keras)."""
    layer = model.get_layer("gated_pixelcnn")
    if not isinstance(layer, GatedPixelCNN):
        raise TypeError(f"{model.name} holds no GatedPixelCNN layer")
    return layer


def grid_of(model: keras.Model) -> tuple[int, int]:
    """(H, W) of the code grids a model built by `build_pixelcnn` takes."""
    shape = model.get_layer("codes").output.shape  # (None, H, W, k)
    return int(shape[1]), int(shape[2])
