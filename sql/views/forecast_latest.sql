-- The newest forecast of each ride, park day and hour.
-- For each (ride, park day) the rows come from the newest forecast set (latest
-- as_of) that forecast that ride on that day, so the hours of one ride-day
-- never mix two sets. Days already past keep the last forecast made before them.
-- park_day_hour orders hours within the park day: hours 0-4 are after midnight
-- and count as 24-28.
CREATE VIEW forecast_latest AS
SELECT
    f.forecast_set_id,
    s.as_of,
    s.model_version_id,
    s.flow_run_id,
    s.created_at AS written_at,
    r.id AS ride_id,
    r.code AS ride_code,
    r.name AS ride_name,
    r.park_code,
    f.park_day,
    f.hour,
    CASE WHEN f.hour < 5 THEN f.hour + 24 ELSE f.hour END AS park_day_hour,
    f.predicted_wait,
    f.from_metadata
FROM forecasts f
JOIN forecast_sets s ON s.id = f.forecast_set_id
JOIN rides r ON r.id = f.ride_id
WHERE NOT EXISTS (
    SELECT 1
    FROM forecasts newer
    JOIN forecast_sets newer_set ON newer_set.id = newer.forecast_set_id
    WHERE newer.ride_id = f.ride_id
      AND newer.park_day = f.park_day
      AND newer_set.as_of > s.as_of
)
