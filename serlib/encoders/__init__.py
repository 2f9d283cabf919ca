"""Pretrained encoders: Whisper and SSL loading (CTranslate2 conversion offline), real-length
encoding, and the frozen-encoder feature cache that every study reads."""
