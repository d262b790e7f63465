"""Metadata the UI renders well: frames as Markdown tables."""

from __future__ import annotations

import polars as pl


def markdown_table(frame: pl.DataFrame, rows: int = 25) -> str:
    """A frame as a Markdown table (the UI renders it); long values cut, at most ``rows`` rows."""
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_width_chars=600,
        fmt_str_lengths=60,
        tbl_cols=14,
        tbl_rows=rows,
    ):
        return str(frame)
