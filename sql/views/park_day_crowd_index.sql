-- Crowd index 1-10 of each park and forecast park day in forecast_latest.
-- mean_wait is the park's mean forecast wait over all its (ride, hour) cells
-- of the day. The index places it in the park's own history of observed daily
-- means (park_day_observed): with n observed days, b of them below mean_wait,
--     crowd_index = min(10, 1 + floor(10 * b / n)),
-- so 1 means quieter than at least 90% of the park's observed days and 10
-- means busier than at least 90% of them. Every day of a park is measured
-- against the same history, so indexes compare across days of that park.
-- The index is NULL while the park has no observed days.
CREATE VIEW park_day_crowd_index AS
WITH forecast_days AS (
    SELECT
        park_code,
        park_day,
        MAX(as_of) AS as_of,
        AVG(predicted_wait) AS mean_wait,
        COUNT(*) AS cells,
        COUNT(DISTINCT ride_id) AS rides,
        SUM(CASE WHEN from_metadata THEN 0 ELSE 1 END) AS fallback_cells
    FROM forecast_latest
    GROUP BY park_code, park_day
),
placed AS (
    SELECT
        d.park_code,
        d.park_day,
        d.as_of,
        d.mean_wait,
        d.cells,
        d.rides,
        d.fallback_cells,
        COUNT(h.park_day) AS history_days,
        SUM(CASE WHEN h.mean_wait < d.mean_wait THEN 1 ELSE 0 END) AS history_days_below
    FROM forecast_days d
    LEFT JOIN park_day_history h ON h.park_code = d.park_code
    GROUP BY d.park_code, d.park_day, d.as_of, d.mean_wait, d.cells, d.rides, d.fallback_cells
)
SELECT
    park_code,
    park_day,
    as_of,
    mean_wait,
    cells,
    rides,
    fallback_cells,
    history_days,
    history_days_below,
    CASE
        WHEN history_days = 0 THEN NULL
        WHEN history_days_below >= history_days THEN 10
        ELSE 1 + (10 * history_days_below) / history_days
    END AS crowd_index
FROM placed
