"""Phoneme-MTL (Li et al.): fused encoder states, emotion head and emotion-tagged phoneme CTC."""
