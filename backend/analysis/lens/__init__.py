"""The tuned lens as a product: its training text (``corpus``), training + evaluation + storage for a
loaded model (``train``), and the lens a model's readouts use (``use``). docs/lens.md."""
