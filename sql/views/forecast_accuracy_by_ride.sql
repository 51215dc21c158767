-- Forecast accuracy per ride and horizon day over every set with actual
-- records: mean absolute error (mae) and mean signed error (bias) in minutes.
CREATE VIEW forecast_accuracy_by_ride AS
SELECT
    ride_id,
    ride_code,
    park_code,
    horizon_day,
    COUNT(*) AS cells,
    COUNT(DISTINCT forecast_set_id) AS forecast_sets,
    AVG(predicted_wait) AS mean_predicted,
    AVG(actual_wait) AS mean_actual,
    AVG(error) AS mean_error,
    AVG(abs_error) AS mae
FROM forecast_accuracy
GROUP BY ride_id, ride_code, park_code, horizon_day
