SELECT day, sum(revenue) AS revenue, count(*) AS line_items FROM line_revenue GROUP BY day
