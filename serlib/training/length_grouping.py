"""Batches of similar length (`TrainConfig.group_by_length`): less padding where utterances differ.

A batch of log-mels is padded to its longest utterance, and the encoder computes over the padding:
with random batches of IEMOCAP (0.6 to 30 s) about half of every batch is padding. The sampler
here keeps training random but draws batches of similar lengths: a seeded shuffle, cut into
windows of `WINDOW` batches, each window sorted by length and cut into batches, and the batches
shuffled again. `group` is the utterances per optimizer micro-step over all processes
(batch_size x processes), so that accelerate's split of consecutive batches across processes
gives every process a part of one length group.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

WINDOW = 50  # batches per sorting window: long enough to group lengths, short enough to stay random


class LengthGroupedSampler(Sampler[int]):
    """Indices of a dataset whose items have `lengths`, in batch-sized groups of similar length."""

    def __init__(self, lengths: Sequence[int], group: int, generator: torch.Generator):
        if group < 1:
            raise ValueError(f"group must be >= 1, got {group}")
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.group, self.generator = group, generator

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(len(self.lengths), generator=self.generator)
        window = self.group * WINDOW
        groups = []
        for start in range(0, len(order), window):
            part = order[start : start + window]
            part = part[torch.argsort(self.lengths[part], descending=True, stable=True)]
            groups += list(part.split(self.group))
        # a short last group goes last: anywhere else it would shift every later batch off its group
        short = [groups.pop()] if groups and len(groups[-1]) < self.group else []
        for i in torch.randperm(len(groups), generator=self.generator).tolist():
            yield from groups[i].tolist()
        for group in short:
            yield from group.tolist()


def padding_share(lengths: Sequence[int], order: Sequence[int], batch_size: int) -> float:
    """The share of padded positions when `order` is cut into batches padded to their longest item."""
    lengths = torch.as_tensor(list(lengths), dtype=torch.float64)[torch.as_tensor(list(order))]
    padded = real = 0.0
    for batch in lengths.split(batch_size):
        padded += float(batch.max()) * len(batch)
        real += float(batch.sum())
    return 1 - real / padded
