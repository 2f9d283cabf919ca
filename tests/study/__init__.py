"""Tests of serlib.study."""
