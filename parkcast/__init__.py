"""parkcast: scheduled batch forecasts of theme-park ride wait times."""

import os

__version__ = "0.1.0"

# Defaults applied before Prefect or TensorFlow is imported; the environment wins.
# Prefect's local mode starts a temporary API server, which on a busy 2-core
# machine can take longer than Prefect's default of 20 seconds.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
