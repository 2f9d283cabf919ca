"""Models: backbones, pooling and heads, and the study methods built on them."""
