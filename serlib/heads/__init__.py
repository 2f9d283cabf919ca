"""Heads on encoder frames: masked mean, attentive and QKV pooling, and the one pooled classifier."""
