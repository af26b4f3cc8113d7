"""Reading a user's CSV for tabular-train: the standard library only, so bad input
is reported before scikit-learn is imported.

Every problem is an ``InputError`` whose message is for the user: the file
cannot be read, it is not a table, a column is missing (the columns are listed),
too few rows, a target with a single value.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from pathlib import Path

from clusterlab_server.training import InputError

# what pandas.read_csv reads as missing by default (compared lower-cased, stripped)
MISSING = {"", "na", "n/a", "nan", "-nan", "null", "none", "#n/a", "#na", "<na>", "#n/a n/a"}
DELIMITERS = {"auto": None, "comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}
MIN_ROWS = 10  # rows with a target value: a few to train on, a few to test on
TABLE_SUFFIXES = {".csv", ".tsv"}  # what a folder (a dataset) is searched for


def is_missing(value: str) -> bool:
    return value.strip().lower() in MISSING


def as_number(value: str) -> float | None:
    """The value as a finite float, None when it is not a number (missing is NaN)."""
    if is_missing(value):
        return math.nan
    if "_" in value:
        return None  # float() reads 1_000 as a number: a CSV does not mean it
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else math.nan


def is_numeric(values: list[str]) -> bool:
    """Every present value is a number (and at least one is present)."""
    present = [v for v in values if not is_missing(v)]
    return bool(present) and all(as_number(v) is not None for v in present)


def column_list(columns: list[str], limit: int = 60) -> str:
    shown = ", ".join(repr(c) for c in columns[:limit])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > limit else "")


@dataclasses.dataclass
class Table:
    path: Path
    columns: list[str]
    rows: list[list[str]]  # every row has len(columns) fields
    delimiter: str
    encoding: str

    def column(self, name: str) -> list[str]:
        i = self.columns.index(name)
        return [row[i] for row in self.rows]


def tables_in(folder: Path) -> list[str]:
    """The .csv and .tsv files under ``folder`` (any depth, hidden ones left out), as sorted posix paths in it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend((Path(dirpath) / name).relative_to(folder).as_posix() for name in filenames
                     if not name.startswith(".") and Path(name).suffix.lower() in TABLE_SUFFIXES)
    return sorted(found)


def table_in(folder: Path, shown: str, pick: str = "") -> tuple[Path, str]:
    """(the file, how to show it) for a folder given as the dataset (a dataset version is a folder): the one
    .csv/.tsv file in it, or ``pick``, a path inside it; InputError when that is not one file."""
    shown = shown.rstrip("/")
    tables = tables_in(folder)
    listed = column_list(tables, 20) if tables else "none"
    if pick:
        relative = Path(pick)
        if relative.is_absolute() or ".." in relative.parts:
            raise InputError(f"csv_file {pick!r} must be a path inside the dataset folder, e.g. "
                             f"{tables[0] if tables else 'houses.csv'}")
        if not (folder / relative).is_file():
            raise InputError(f"csv_file: {shown} has no file {relative.as_posix()}; its CSV files: {listed}")
        return folder / relative, f"{shown}/{relative.as_posix()}"
    if len(tables) == 1:
        return folder / tables[0], f"{shown}/{tables[0]}"
    if not tables:
        raise InputError(f"dataset {shown} is a folder without a .csv or .tsv file: give a CSV file or a dataset "
                         f"that holds one")
    raise InputError(f"dataset {shown} holds {len(tables)} CSV files ({listed}): set csv_file to the one to "
                     f"train on")


def read_table(path: Path, delimiter: str = "auto", shown_as: str | None = None) -> Table:
    """The CSV at ``path``; InputError with a user's message when it is not one."""
    shown = shown_as or str(path)
    if not path.exists():
        raise InputError(f"dataset {shown} does not exist (was it moved or deleted after submission?)")
    if path.is_dir():
        raise InputError(f"dataset {shown} is a folder: give the path of a .csv file in it")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"dataset {shown} cannot be read: {e.strerror or e}") from None
    if not raw.strip():
        raise InputError(f"dataset {shown} is empty")
    if b"\0" in raw[:65536]:
        raise InputError(f"dataset {shown} is not a text file (CSV): is it a spreadsheet or a compressed file?")
    try:
        text, encoding = raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = raw.decode("latin-1"), "latin-1"  # every byte is a character: never fails
    sep = DELIMITERS.get(delimiter, delimiter)
    if sep is None:
        sample = text[:65536]
        try:
            sep = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            sep = ","
    reader = csv.reader(text.splitlines(), delimiter=sep)
    try:
        header = next(reader)
        while not any(field.strip() for field in header):
            header = next(reader)
    except StopIteration:
        raise InputError(f"dataset {shown} has no header line") from None
    except csv.Error as e:
        raise InputError(f"dataset {shown} is not a valid CSV file: {e}") from None
    columns = [name.strip() for name in header]
    unnamed = [i + 1 for i, name in enumerate(columns) if not name]
    if unnamed:
        raise InputError(f"dataset {shown}: column {unnamed[0]} of the header line has no name "
                         f"(the first line must name every column)")
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise InputError(f"dataset {shown}: the header names column(s) {column_list(duplicates)} more than once")
    rows = []
    try:
        for row in reader:
            if not any(field.strip() for field in row):
                continue  # blank lines, as pandas skips them
            if len(row) != len(columns):
                raise InputError(
                    f"dataset {shown}: line {reader.line_num} has {len(row)} field(s) but the header has "
                    f"{len(columns)} ({column_list(columns, 10)}); is the separator {sep!r} right? "
                    f"(parameter delimiter)")
            rows.append([field.strip() for field in row])
    except csv.Error as e:
        raise InputError(f"dataset {shown}: line {reader.line_num} is not valid CSV: {e}") from None
    if len(columns) < 2:
        raise InputError(f"dataset {shown} has a single column {columns[0]!r} (with separator {sep!r}): "
                         f"a target and at least one feature column are needed; is the separator right? "
                         f"(parameter delimiter)")
    return Table(path=path, columns=columns, rows=rows, delimiter=sep, encoding=encoding)


def check_columns(table: Table, target: str, ignore: list[str], shown: str) -> None:
    """The target and the ignored columns exist; else the message lists the columns."""
    if target not in table.columns:
        near = [c for c in table.columns if c.lower() == target.strip().lower()]
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise InputError(f"target column {target!r} is not in {shown}{hint}; its columns are: "
                         f"{column_list(table.columns)}")
    unknown = [c for c in ignore if c not in table.columns]
    if unknown:
        raise InputError(f"ignore_columns names {column_list(unknown)}, not in {shown}; its columns are: "
                         f"{column_list(table.columns)}")
    if not [c for c in table.columns if c != target and c not in ignore]:
        raise InputError(f"no feature column is left in {shown} besides the target {target!r} "
                         f"and ignore_columns")


def check_target(values: list[str], target: str, shown: str) -> None:
    """Enough rows with a target value, and more than one distinct value."""
    present = [v for v in values if not is_missing(v)]
    if len(present) < MIN_ROWS:
        raise InputError(f"{shown} has only {len(present)} row(s) with a value in target column {target!r}; "
                         f"at least {MIN_ROWS} are needed to train and test a model")
    distinct = {canonical(v) for v in present} if is_numeric(present) else set(present)
    if len(distinct) == 1:
        raise InputError(f"target column {target!r} has a single value ({present[0]!r}) in all {len(present)} "
                         f"row(s): there is nothing to learn; choose another target column")


def canonical(value: str) -> float | str:
    number = as_number(value)
    return value if number is None else number


def decide_task(values: list[str], task: str, target: str) -> tuple[str, str]:
    """(task, why): ``auto`` is classification for a non-numeric target, or an integer
    one with at most 20 distinct values; regression otherwise."""
    present = [v for v in values if not is_missing(v)]
    numeric = is_numeric(present)
    if task == "regression":
        if not numeric:
            example = next(v for v in present if as_number(v) is None)
            raise InputError(f"target column {target!r} is not numeric (it holds e.g. {example!r}): regression "
                             f"needs numbers; choose task classification (or auto)")
        return "regression", "chosen"
    distinct = {canonical(v) for v in present}
    if (task == "classification" or not numeric) and len(distinct) > len(present) / 2:
        advice = "choose task regression" if numeric else "choose another target column"
        raise InputError(f"target column {target!r} has {len(distinct)} distinct values in {len(present)} rows: "
                         f"too many classes to learn each from examples (is it a quantity or an identifier?); "
                         f"{advice}")
    if task == "classification":
        return "classification", "chosen"
    if not numeric:
        return "classification", "the target is not numeric"
    numbers = {as_number(v) for v in present}
    if all(float(n).is_integer() for n in numbers) and len(numbers) <= 20:
        return "classification", (f"the target holds only {len(numbers)} distinct whole numbers "
                                  f"(set task to regression to predict it as a quantity)")
    return "regression", "the target is numeric"
