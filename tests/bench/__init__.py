"""Tests of serlib.bench."""
