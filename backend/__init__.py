"""RaML Explorer backend: plain importable Python (no Streamlit). Layers: docs/architecture.md."""

__version__ = "0.2.0"
