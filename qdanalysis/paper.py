"""Published numbers of arXiv 2502.00674 used as references in figures and tests.

Only values stated in the paper's tables (as rendered from arXiv v1) are here; derived values
live in the notebooks and tests that derive them.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["PAPER_ID", "TABLE4", "table4"]

PAPER_ID = "arXiv:2502.00674 (Li, Lin, Xia, Jin 2025), Table 4"

#: Table 4: t = α·z(q) + β·z(d) + γ per dataset; "±" is one value shared by α and β (most likely
#: the standard error); p < 0.001 for both everywhere.
TABLE4: dict[str, dict[str, float]] = {
    "MMLU": {"alpha": 2.558, "beta": 1.841, "pm": 0.176, "r2": 0.771},
    "CRUX": {"alpha": 4.548, "beta": 1.421, "pm": 0.459, "r2": 0.685},
    "MATH": {"alpha": 4.719, "beta": 2.839, "pm": 0.416, "r2": 0.760},
}


def table4() -> pd.DataFrame:
    """Table 4 as a tidy frame: ``dataset, term (quality_z|diversity_z), estimate, pm, r2``."""
    rows = []
    for ds, v in TABLE4.items():
        rows.append(
            {
                "dataset": ds,
                "term": "quality_z",
                "estimate": v["alpha"],
                "pm": v["pm"],
                "r2": v["r2"],
            }
        )
        rows.append(
            {
                "dataset": ds,
                "term": "diversity_z",
                "estimate": v["beta"],
                "pm": v["pm"],
                "r2": v["r2"],
            }
        )
    return pd.DataFrame(rows)
