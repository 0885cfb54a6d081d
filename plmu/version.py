"""plmu's version: written here once; ``plmu.__version__``, pyproject.toml and every record's ``plmu_version`` read it
(a module of its own, so that the records' code needs no import of the package's face)."""

__version__ = "0.1.0"
