"""feedgan: generative adversarial networks for social-media data."""
__version__ = "0.1.0"
