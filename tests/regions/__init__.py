"""Tests: regions."""
