SELECT date_trunc('month', day) AS month, round(sum(revenue), 2) AS revenue FROM daily_revenue GROUP BY 1
