#!/bin/sh
# Replay 2019 the way the scheduler would have run it, timed with /usr/bin/time.
# Run it after `make run`, which ingests every bundled ride into
# var/parkcast.db. The replay reads that database and writes its own
# database, models and plot under var/replay-year/. It took about 40 minutes
# on 2 idle cores (docs/benchmarks.md, "Replay of 2019").
set -eu
cd "$(dirname "$0")/.."
out=var/replay-year
rm -rf "$out/prefect" "$out/models" "$out/replay.db"
mkdir -p "$out/prefect"
PREFECT_HOME=$PWD/$out/prefect PREFECT_SERVER_ANALYTICS_ENABLED=false \
PARKCAST_DATABASE_URL=sqlite:///$PWD/var/parkcast.db PARKCAST_MODEL_DIR=$PWD/$out/models \
  /usr/bin/time -v .venv/bin/parkcast --no-progress replay --start 2019-01-01 --end 2019-12-31 --retrain-every 7 \
  --replay-url "sqlite:///$PWD/$out/replay.db" --plot "$PWD/$out/replay-2019.png"
