import basin
import pyarrow as pa
import pyarrow.compute as pc


@basin.python("3.11", timeout="5m", memory="1GiB")
@basin.model(materialize=None)  # lives only for the run: handed to its children in memory
def clean_orders(orders=basin.Model("raw_orders", columns=["id", "customer", "amount", "day"]), params=None):
    amount = orders["amount"].cast(pa.float64())
    keep = pc.and_(pc.greater_equal(amount, params["min_amount"]), pc.is_valid(orders["customer"]))
    cleaned = orders.filter(keep)
    print(f"kept {cleaned.num_rows} of {orders.num_rows} orders")
    return cleaned.set_column(0, "id", cleaned["id"]).append_column(
        "customer_key", pc.utf8_upper(cleaned["customer"].cast(pa.string()))
    )
