"""TPC-H q1's pricing summary in pyarrow (not SQL), over the rows shipped up to 1998-09-02.
bench/run.py runs it as this one-model pipeline and, through `summarize`, as script.py."""
import basin
import pyarrow as pa
import pyarrow.compute as pc

COLUMNS = ["l_returnflag", "l_linestatus", "l_shipdate", "l_quantity", "l_extendedprice", "l_discount"]
SHIPPED_BY = "1998-09-02"


def summarize(lineitem: pa.Table) -> pa.Table:
    price = lineitem["l_extendedprice"].cast(pa.float64())
    discount = lineitem["l_discount"].cast(pa.float64())
    table = pa.table({
        "l_returnflag": lineitem["l_returnflag"],
        "l_linestatus": lineitem["l_linestatus"],
        "quantity": lineitem["l_quantity"].cast(pa.float64()),
        "revenue": pc.multiply(price, pc.subtract(1.0, discount)),
    })
    out = table.group_by(["l_returnflag", "l_linestatus"]).aggregate(
        [("quantity", "sum"), ("revenue", "sum"), ("quantity", "count")]
    )
    return out.sort_by([("l_returnflag", "ascending"), ("l_linestatus", "ascending")])


# Declarations are literals (Basin reads them without running the file): COLUMNS and
# SHIPPED_BY again, which script.py uses.
@basin.python("3.11", timeout="10m", memory="8GiB")
@basin.model()
def pricing_summary(
    lineitem=basin.Model(
        "tpch.lineitem",
        columns=["l_returnflag", "l_linestatus", "l_shipdate", "l_quantity", "l_extendedprice", "l_discount"],
        filter="l_shipdate <= DATE '1998-09-02'",
    ),
):
    return summarize(lineitem)
