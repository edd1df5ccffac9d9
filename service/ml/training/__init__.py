"""Training: corpus -> autoencoder (global + content latents, heads) -> joint latents -> tag-conditioned denoiser."""

from service.ml.training.trainer import train

__all__ = ["train"]
