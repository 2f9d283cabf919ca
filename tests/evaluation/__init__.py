"""Tests of serlib.evaluation."""
