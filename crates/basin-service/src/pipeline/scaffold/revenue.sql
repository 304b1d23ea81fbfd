-- The model `revenue` (this file's name), stored as the table shop.revenue.
SELECT customer_key AS customer, count(*) AS orders, sum(amount) AS revenue
FROM clean_orders
GROUP BY customer_key
ORDER BY revenue DESC
