-- One row per ride and park day of forecast_latest: mean and peak forecast
-- wait, the hour of the peak and the best hour to ride (lowest forecast wait).
-- Ties go to the earlier hour of the park day.
CREATE VIEW ride_day_summary AS
WITH ranked AS (
    SELECT
        l.*,
        ROW_NUMBER() OVER (
            PARTITION BY l.ride_id, l.park_day ORDER BY l.predicted_wait ASC, l.park_day_hour ASC
        ) AS best_rank,
        ROW_NUMBER() OVER (
            PARTITION BY l.ride_id, l.park_day ORDER BY l.predicted_wait DESC, l.park_day_hour ASC
        ) AS peak_rank
    FROM forecast_latest l
)
SELECT
    ride_id,
    ride_code,
    ride_name,
    park_code,
    park_day,
    forecast_set_id,
    as_of,
    model_version_id,
    COUNT(*) AS hours,
    AVG(predicted_wait) AS mean_wait,
    MAX(predicted_wait) AS peak_wait,
    MAX(CASE WHEN peak_rank = 1 THEN hour END) AS peak_hour,
    MIN(predicted_wait) AS best_wait,
    MAX(CASE WHEN best_rank = 1 THEN hour END) AS best_hour,
    SUM(CASE WHEN from_metadata THEN 0 ELSE 1 END) AS fallback_hours
FROM ranked
GROUP BY ride_id, ride_code, ride_name, park_code, park_day, forecast_set_id, as_of, model_version_id
