"""Training shared by every method: the trainer and its checkpoints, precision and device choice,
classifier heads on cached features, and the predictions table every fold loop returns."""
