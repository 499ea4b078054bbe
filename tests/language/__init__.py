"""Tests: language."""
