"""Predict with a tabular-train model on new rows of a CSV file.

    python predict.py output/model.joblib new_rows.csv [predictions.csv]

The model may be the training job's output folder (model.joblib in it), the rows
a folder with one CSV file (a dataset). The CSV needs the model's feature columns
(``bundle["features"]``; the target and other columns may be there too, they are
ignored). Without an output path the predictions are printed. From Python::

    bundle = joblib.load("model.joblib")
    X = rows_to_input(bundle, columns, rows)   # columns: header names, rows: lists of text fields
    bundle["pipeline"].predict(X)
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from clusterlab_server.training import InputError

from tabular_input import as_number, column_list, is_missing, read_table, table_in


def rows_to_input(bundle: dict, columns: list[str], rows: list[list[str]]):
    """The pipeline's input from CSV text fields: numeric features as floats, categorical as text."""
    import numpy as np

    missing = [c for c in bundle["features"] if c not in columns]
    if missing:
        raise ValueError(f"the rows lack the model's feature column(s) {column_list(missing)}")
    numeric = set(bundle["numeric"])
    X = np.empty((len(rows), len(bundle["features"])), dtype=object)
    for c, name in enumerate(bundle["features"]):
        j = columns.index(name)
        for r, row in enumerate(rows):
            value = row[j]
            if name in numeric:
                number = as_number(value)
                X[r, c] = np.nan if number is None else number  # text where a number was: as if missing
            else:
                X[r, c] = np.nan if is_missing(value) else value.strip()
    return X


def main(argv: list[str]) -> int:
    import joblib

    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    model, rows = Path(argv[0]), Path(argv[1])
    folder = model.is_dir()  # a tabular-train job's output folder
    if folder:
        model = model / "model.joblib"
    if not model.is_file():
        what = "holds no model.joblib" if folder else "is not a file"
        print(f"error: {argv[0]} {what} (give a tabular-train job's output folder or its model.joblib)",
              file=sys.stderr)
        return 2
    bundle = joblib.load(model)
    try:
        table = read_table(table_in(rows, argv[1])[0] if rows.is_dir() else rows)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    X = rows_to_input(bundle, table.columns, table.rows)
    predicted = bundle["pipeline"].predict(X)
    header = ["row", f"predicted_{bundle['target']}"]
    lines = [[i, p.item() if hasattr(p, "item") else p] for i, p in enumerate(predicted)]
    if len(argv) == 3:
        with open(argv[2], "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(lines)
    else:
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
