"""Tests: explain."""
