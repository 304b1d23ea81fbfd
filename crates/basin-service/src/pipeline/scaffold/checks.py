import basin
import pyarrow.compute as pc


@basin.expectation()
def no_negative_revenue(revenue=basin.Model("revenue")):
    """A run whose revenue table has a negative total fails, and nothing is merged."""
    return revenue.num_rows == 0 or pc.min(revenue["revenue"]).as_py() >= 0
