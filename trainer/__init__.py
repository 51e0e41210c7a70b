"""The trainer: data, VQ-VAE and PixelCNN models, training loop, storage (imports TensorFlow lazily)."""
