"""Tests of serlib.methods."""
