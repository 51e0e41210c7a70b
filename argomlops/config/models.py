"""`models`: the shapes of the VQ-VAE (stage 1) and of the gated PixelCNN prior over its codes (stage 2)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from argomlops.config.base import Section, blame


class VQVAEConfig(Section):
    """Shape of the VQ-VAE (stage 1)."""

    encoder_channels: list[int] = Field(
        default_factory=lambda: [32, 64],
        min_length=1,
        max_length=6,
        description="Filters of each stride-2 convolution of the encoder; the decoder mirrors them. "
        "The latent grid is imageSize / 2**len(encoderChannels) on a side.",
    )
    residual_blocks: int = Field(2, ge=0, le=16, description="Residual blocks after the strided convolutions.")
    residual_channels: int = Field(32, ge=1, description="Hidden filters inside each residual block.")
    embedding_dim: int = Field(32, ge=1, description="Size D of each codebook vector.")
    num_embeddings: int = Field(128, ge=2, le=65536, description="Number K of codebook vectors.")
    latent_channels: int | None = Field(
        None,
        ge=1,
        description="Encoder output channels; a multiple k of embeddingDim, giving k codes per latent "
        "position (default: embeddingDim, k = 1).",
    )
    quantizer: Literal["ema", "loss"] = Field(
        "ema", description="Codebook update: exponential moving averages (ema) or the codebook loss (loss)."
    )
    commitment_cost: float = Field(0.25, ge=0.0, description="Weight beta of the commitment loss.")
    decay: float = Field(0.99, gt=0.0, lt=1.0, description="EMA decay of the codebook (quantizer: ema).")
    dead_code_threshold: float = Field(
        0.01,
        ge=0.0,
        description="A code whose EMA usage falls below this many assignments per step is restarted on a "
        "random encoder output (quantizer: ema); 0 disables restarts.",
    )

    @property
    def latent(self) -> int:
        """Encoder output channels: latentChannels, or embeddingDim when unset."""
        return self.latent_channels or self.embedding_dim

    @property
    def codes_per_position(self) -> int:
        """k: how many codebook indices each latent position holds."""
        return self.latent // self.embedding_dim

    @property
    def downsampling(self) -> int:
        """How many image pixels one latent position spans on a side: 2**len(encoderChannels)."""
        return 2 ** len(self.encoder_channels)

    @model_validator(mode="after")
    def _latent_multiple(self) -> VQVAEConfig:
        latent = self.latent
        if latent % self.embedding_dim:
            raise blame(
                "latentChannels",
                f"{latent} is not a multiple of embeddingDim ({self.embedding_dim}): "
                f"each latent position is split into latentChannels/embeddingDim codes; "
                f"use e.g. {self.embedding_dim} or {2 * self.embedding_dim}",
            )
        return self


class PixelCNNConfig(Section):
    """Shape of the gated PixelCNN prior over the VQ-VAE codes (stage 2)."""

    filters: int = Field(64, ge=4, description="Channels of the vertical and horizontal stacks.")
    layers: int = Field(6, ge=1, le=40, description="Gated layers after the first masked convolution.")
    kernel_size: int = Field(3, ge=3, le=9, description="Odd kernel size of the gated layers.")
    embedding_dim: int = Field(32, ge=1, description="Size of the learned embedding of each input code.")
    dilations: list[int] = Field(
        default_factory=lambda: [1],
        min_length=1,
        max_length=8,
        description="Dilation of the gated layers after the first, cycled over them, e.g. [1, 2, 4]: "
        "each doubling widens what a layer sees, so few layers cover the whole code grid.",
    )
    condition_on_tags: list[str] = Field(
        default_factory=list,
        description="Tags to condition on (one-hot of these, from the metadata); empty = unconditional.",
    )

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"kernelSize must be odd, got {value}")
        return value

    @field_validator("dilations")
    @classmethod
    def _dilations(cls, value: list[int]) -> list[int]:
        if any(d < 1 or d > 64 for d in value):
            raise ValueError(f"every dilation must be 1..64, got {value}")
        return value


class ModelsConfig(Section):
    """The two models of a run."""

    vqvae: VQVAEConfig = Field(default_factory=VQVAEConfig, description="Stage 1: the VQ-VAE.")
    pixelcnn: PixelCNNConfig = Field(default_factory=PixelCNNConfig, description="Stage 2: the PixelCNN prior.")
