# Hydra configs. Installed as the package `plmu.conf` (see pyproject.toml), so `plmu-train` finds them anywhere.
# Importing it (Hydra does, to read the configs) registers the trainer's settings (conf/trainer/default.yaml's base).
from plmu.train.settings import register

register()
