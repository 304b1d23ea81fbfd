import basin
import pyarrow.compute as pc


@basin.expectation()
def no_negative_revenue(revenue=basin.Model("revenue_by_nation_year", columns=["revenue"])):
    return pc.min(revenue["revenue"]).as_py() >= 0
