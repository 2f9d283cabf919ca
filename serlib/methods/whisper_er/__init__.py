"""Whisper-ER and SerialMTL (Fukuda et al.): emotion, gender and text as tokens of the whole Whisper."""
