"""avemotion: audio-visual emotion recognition after Ashraf et al. (2022)."""

__version__ = "0.1.0"
