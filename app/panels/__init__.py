"""Explore page panels, one module each."""
