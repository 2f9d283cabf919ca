"""Tests of serlib.heads."""
