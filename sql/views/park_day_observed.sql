-- Observed mean posted wait of each park on each park day, averaged the way
-- forecasts are: first the mean posted wait per (ride, hour) cell, then the
-- mean over the park's cells of the day. Closed rides and missing posted waits
-- are left out. Each forecast write copies it into the park_day_history
-- table, the reference distribution of the crowd index.
CREATE VIEW park_day_observed AS
SELECT
    park_code,
    park_day,
    AVG(cell_wait) AS mean_wait,
    COUNT(*) AS cells
FROM (
    SELECT
        r.park_code,
        o.park_day,
        o.ride_id,
        o.local_hour,
        AVG(CAST(o.posted_wait AS DOUBLE PRECISION)) AS cell_wait
    FROM observations o
    JOIN rides r ON r.id = o.ride_id
    WHERE o.posted_wait IS NOT NULL AND NOT o.is_closed
    GROUP BY r.park_code, o.park_day, o.ride_id, o.local_hour
) cells
GROUP BY park_code, park_day
