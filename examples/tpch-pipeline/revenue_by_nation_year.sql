-- Stored as analytics.revenue_by_nation_year. `line_revenue` is the Python model's output.
SELECT n.n_name AS nation,
       extract(year FROM o.o_orderdate) AS year,
       round(sum(r.revenue), 2) AS revenue,
       count(*) AS line_items
FROM line_revenue r
JOIN tpch.orders o ON r.l_orderkey = o.o_orderkey
JOIN tpch.customer c ON o.o_custkey = c.c_custkey
JOIN tpch.nation n ON c.c_nationkey = n.n_nationkey
WHERE extract(year FROM o.o_orderdate) >= {{ since_year }}
GROUP BY 1, 2
