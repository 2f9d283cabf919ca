"""Emo-DNA (Ye et al.): cross-corpus emotion recognition from a labelled source to an unlabelled target."""
