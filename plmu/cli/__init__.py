"""Command-line entry points: ``plmu-train`` (Hydra) and ``plmu-eval``."""
