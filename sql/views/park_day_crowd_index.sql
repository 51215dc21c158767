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
    -- Correlated counts use the (park_code, mean_wait) index of the history,
    -- because a join and GROUP BY over every history row took seconds on SQLite.
    SELECT
        d.*,
        (SELECT COUNT(*) FROM park_day_history h WHERE h.park_code = d.park_code) AS history_days,
        (
            SELECT COUNT(*) FROM park_day_history h
            WHERE h.park_code = d.park_code AND h.mean_wait < d.mean_wait
        ) AS history_days_below
    FROM forecast_days d
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
