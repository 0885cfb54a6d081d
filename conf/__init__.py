# Hydra configs. Installed as the package `plmu.conf` (see pyproject.toml), so `plmu-train` finds them anywhere.
