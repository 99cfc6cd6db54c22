"""faceprot: protect face photos from face recognition, and measure the protection honestly."""

__version__ = "0.1.0"
