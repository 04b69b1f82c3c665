"""The seed project's command names, kept working as aliases of ``python -m training.train``."""
