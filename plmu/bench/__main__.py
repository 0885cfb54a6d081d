"""``python -m plmu.bench``: the same as ``plmu-bench``."""

from plmu.bench import main

raise SystemExit(main())
