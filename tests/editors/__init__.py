"""Tests: editors."""
