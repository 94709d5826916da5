"""Tables and figures for attack and defense results."""

from .figures import save_comparison_grid, save_loss_curves
from .tables import csv_table, markdown_table, write_json_atomic, write_text_atomic

__all__ = ["save_comparison_grid", "save_loss_curves", "csv_table", "markdown_table", "write_json_atomic", "write_text_atomic"]
