"""Closed-loop metrics: ``catalogue`` (stdlib only, the one list), one module per family, ``registry``."""
