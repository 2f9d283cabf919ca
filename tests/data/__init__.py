"""Tests of serlib.data."""
