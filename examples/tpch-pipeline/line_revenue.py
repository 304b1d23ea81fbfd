import basin
import pyarrow as pa
import pyarrow.compute as pc


@basin.python("3.11", timeout="10m", memory="4GiB")
@basin.model(materialize=None)  # handed to revenue_by_nation_year in memory, never stored
def line_revenue(
    lineitem=basin.Model(
        "tpch.lineitem",
        columns=["l_orderkey", "l_extendedprice", "l_discount", "l_returnflag"],
        filter="l_returnflag <> 'R'",  # pushed into the Parquet scan: returned items never leave it
    ),
):
    """Cleans and enriches line items: the revenue each one brought in."""
    price = lineitem["l_extendedprice"].cast(pa.float64())
    discount = lineitem["l_discount"].cast(pa.float64())
    revenue = pc.multiply(price, pc.subtract(1.0, discount))
    print(f"{lineitem.num_rows} line items, {pc.sum(revenue).as_py():,.0f} in revenue")
    return pa.table({"l_orderkey": lineitem["l_orderkey"], "revenue": revenue})
