"""Tests of serlib.encoders."""
