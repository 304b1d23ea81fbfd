"""Basin's Python SDK: declare functions, models and expectations with decorators.

    import basin

    @basin.python("3.11", pip={"pandas": "2.2.3"}, timeout="5m", memory="2GiB")
    @basin.model(materialize="replace")
    def top_customers(orders=basin.Model("tpch.orders", columns=["o_custkey", "o_totalprice"],
                                         filter="o_orderdate >= '1995-01-01'")):
        ...

The decorators only record what Basin needs (environment, limits, inputs, materialization);
they never change what the function does, so it can be called and tested as plain Python.
`python -m basin.spec FILE.py` prints what a file declares, as JSON.
"""

from basin.decorators import Model, expectation, model, python
from basin.spec import describe

__all__ = ["Model", "describe", "expectation", "model", "python"]
__version__ = "0.1.0"
