-- Every stored forecast cell (of every set, not only the newest) that has
-- actual records: the forecast against the observed mean posted wait of that
-- ride, park day and hour. horizon_day is the park day minus the set's as-of
-- day (1 = the day after the last observed day). error = predicted - actual.
-- TODO: the actual waits are averaged from observations on every query,
-- which takes over a second on SQLite with the bundled data. Store them per cell if this grows.
CREATE VIEW forecast_accuracy AS
SELECT
    cells.*,
    cells.predicted_wait - cells.actual_wait AS error,
    ABS(cells.predicted_wait - cells.actual_wait) AS abs_error
FROM (
    SELECT
        f.forecast_set_id,
        s.as_of,
        s.model_version_id,
        r.id AS ride_id,
        r.code AS ride_code,
        r.park_code,
        f.park_day,
        f.hour,
        (f.park_day - s.as_of) AS horizon_day,
        f.predicted_wait,
        f.from_metadata,
        (
            SELECT AVG(CAST(o.posted_wait AS DOUBLE PRECISION))
            FROM observations o
            WHERE o.ride_id = f.ride_id
              AND o.park_day = f.park_day
              AND o.local_hour = f.hour
              AND o.posted_wait IS NOT NULL
              AND NOT o.is_closed
        ) AS actual_wait
    FROM forecasts f
    JOIN forecast_sets s ON s.id = f.forecast_set_id
    JOIN rides r ON r.id = f.ride_id
) cells
WHERE cells.actual_wait IS NOT NULL
