"""Training: objectives, checkpoints, loggers, the trainer, and one run from a config (``run.train``)."""
