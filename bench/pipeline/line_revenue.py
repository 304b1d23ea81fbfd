import basin
import pyarrow as pa
import pyarrow.compute as pc


@basin.python("3.11", timeout="10m", memory="8GiB")
@basin.model(materialize=None)
def line_revenue(lineitem=basin.Model("tpch.lineitem", columns=["l_shipdate", "l_extendedprice", "l_discount"])):
    price = lineitem["l_extendedprice"].cast(pa.float64())
    discount = lineitem["l_discount"].cast(pa.float64())
    return pa.table({"day": lineitem["l_shipdate"], "revenue": pc.multiply(price, pc.subtract(1.0, discount))})
