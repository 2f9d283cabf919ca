"""Tests of serlib.training."""
