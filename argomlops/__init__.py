"""argomlops: VQ-VAE + PixelCNN image-model training on Kubernetes spot GPUs, or on a laptop."""

__version__ = "0.1.0"
