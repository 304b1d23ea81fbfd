"""The plain-script side of the pipeline-vs-script benchmark: read the Parquet files named on
the command line with pyarrow (the same columns, the same filter pushed into the scan), run
the pipeline's own `summarize`, and write the result as a Parquet file.
    python script.py OUT.parquet FILE.parquet...   (run with the pipeline's environment)"""
import datetime
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from pricing_summary import COLUMNS, SHIPPED_BY, summarize  # noqa: E402

out, files = sys.argv[1], sys.argv[2:]
shipped_by = datetime.date.fromisoformat(SHIPPED_BY)
lineitem = ds.dataset(files, format="parquet").to_table(columns=COLUMNS, filter=ds.field("l_shipdate") <= shipped_by)
pq.write_table(summarize(lineitem), out)
