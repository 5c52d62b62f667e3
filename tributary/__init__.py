"""tributary: continuous royalty tracking and payment for AI inference."""

__version__ = "0.1.0"
