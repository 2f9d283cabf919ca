"""serlib: the thin library behind the speech-emotion-recognition study notebooks."""

__version__ = "0.1.0"

import warnings as _warnings

# tqdm.auto (imported by transformers and accelerate) warns in every notebook without ipywidgets;
# serlib's progress bars are plain-text on purpose, so the warning is noise in the reports.
_warnings.filterwarnings("ignore", message="IProgress not found")
