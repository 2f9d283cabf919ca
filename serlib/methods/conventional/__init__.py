"""The conventional method: Whisper encoder -> average pooling -> FC (Fukuda et al.'s baseline)."""
