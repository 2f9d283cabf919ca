"""Data: the manifest schema, audio I/O, one loader per corpus, and folds computed from manifests.

from serlib.data.corpora import load_corpus
from serlib.data.audio import check_audio, load_audio
from serlib.data.folds import make_folds, fold_table
"""
