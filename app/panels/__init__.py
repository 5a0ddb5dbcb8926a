"""Explore's panels: each one draws one part of the page from a run (no model math)."""
