"""Basin's Python SDK: declare functions, models and expectations with decorators.

    import basin

    @basin.python("3.11", pip={"pandas": "2.2.3"}, timeout="5m", memory="2GiB")
    @basin.model(materialize="replace")
    def top_customers(orders=basin.Model("tpch.orders", columns=["o_custkey", "o_totalprice"],
                                         filter="o_orderdate >= '1995-01-01'")):
        ...

    @basin.on_object(bucket="landing", suffix=".csv", to="raw.orders", batch_size=100)
    def load(event, context):
        return context.read_table()      # appended to raw.orders, exactly once per file

The decorators only record what Basin needs (environment, limits, inputs, materialization);
they never change what the function does, so it can be called and tested as plain Python.
`python -m basin.spec FILE.py` prints what a file declares, as JSON.
"""

from basin.decorators import Model, expectation, http, model, on_commit, on_object, python, schedule
from basin.spec import describe

__all__ = ["Model", "describe", "expectation", "http", "model", "on_commit", "on_object", "python", "schedule"]
__version__ = "0.1.0"
