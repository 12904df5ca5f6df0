"""Tests of the demo OneRoster provider (framework-free, over real HTTP)."""
