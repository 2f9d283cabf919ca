"""serlib: the thin library behind the speech-emotion-recognition study notebooks."""

__version__ = "0.1.0"
