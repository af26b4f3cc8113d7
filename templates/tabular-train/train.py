"""tabular-train: a scikit-learn model on a CSV file, for a chosen target column.

Reads the CSV (the standard library: bad input is reported before scikit-learn
is imported), decides the task (``auto``: classification for a non-numeric
target or one with few distinct whole numbers), holds out ``test_fraction`` of
the rows (stratified for classification when it can), fits a Pipeline (numeric
columns: median imputation, scaled for the linear model; categorical columns:
a "missing" category, one-hot encoded) and writes in the output folder:

- ``model.joblib``: a dict with the fitted ``pipeline``, the ``features`` in the
  order its input columns take, the ``target``, the ``task``, the ``classes``
  and which features are ``numeric`` / ``categorical``; ``predict.py`` (its
  ``rows_to_input``) predicts with it on the rows of a CSV file;
- ``metrics.json`` (all metrics, the split, the columns used), ``metrics.jsonl``
  (one line for the jobs panel), TensorBoard scalars under ``tensorboard/``;
- ``predictions.csv``: the held-out rows, their CSV row number (``row``, from 0,
  blank lines not counted, as pandas numbers them), their columns and the
  prediction (and its probability for a classifier, its error for a regressor).

The model saved is the one trained on the training split, the one the metrics
describe.

``dataset`` may be a dataset the job service mounted read-only (a folder: its one
CSV file is used, or ``csv_file`` says which); nothing is written next to it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from pathlib import Path

from clusterlab_server.training import InputError, TrainingJob, fail

from tabular_input import (
    as_number,
    check_columns,
    check_target,
    decide_task,
    is_missing,
    is_numeric,
    read_table,
    table_in,
)

IDENTIFIER_SHARE = 0.9  # a text column whose values are nearly all distinct is a name or an id


def main() -> None:
    job = TrainingJob.from_environment()
    try:
        plan = prepare(job)
    except InputError as e:
        fail(str(e))
        return
    result = train(job, plan)
    summary = ", ".join(f"{k} {v:.4g}" for k, v in result["metrics"].items())
    print(f"tabular-train: done in {result['fit_seconds']:.1f} s of fitting: {summary}", flush=True)
    print(f"tabular-train: wrote model.joblib, metrics.json, predictions.csv ({len(result['test_rows'])} rows) "
          f"in {job.output}", flush=True)


# ----- input ---------------------------------------------------------------------------


def prepare(job: TrainingJob) -> dict:
    """Everything checked and decided before scikit-learn is imported."""
    p = job.params
    shown, path = job.given_as("dataset"), job.path("dataset")
    if path.is_dir():  # a dataset version (or a folder): its CSV file
        path, shown = table_in(path, shown, p.get("csv_file") or "")
    elif p.get("csv_file"):
        raise InputError(f"csv_file {p['csv_file']!r} picks a file in a dataset folder, but dataset {shown} is "
                         f"a file: leave csv_file empty")
    target = p["target"]
    ignore = list(p.get("ignore_columns") or [])
    table = read_table(path, p.get("delimiter", "auto"), shown_as=shown)
    print(f"tabular-train: {shown}: {len(table.rows)} rows, {len(table.columns)} columns "
          f"({table.encoding}, separator {table.delimiter!r})", flush=True)
    check_columns(table, target, ignore, shown)
    values = table.column(target)
    check_target(values, target, shown)
    kept = [i for i, v in enumerate(values) if not is_missing(v)]
    if len(kept) < len(values):
        print(f"tabular-train: {len(values) - len(kept)} row(s) without a {target!r} value are left out", flush=True)
    task, why = decide_task(values, p.get("task", "auto"), target)
    print(f"tabular-train: task {task} ({why})", flush=True)

    numeric, categorical, dropped = [], [], []
    for name in table.columns:
        if name == target or name in ignore:
            continue
        column = [table.rows[i][table.columns.index(name)] for i in kept]
        present = [v for v in column if not is_missing(v)]
        if not present:
            dropped.append((name, "it has no values"))
        elif is_numeric(present):
            numeric.append(name)
        elif len(present) >= 20 and len(set(present)) >= IDENTIFIER_SHARE * len(present):
            dropped.append((name, f"text with {len(set(present))} distinct values in {len(present)} rows "
                                  f"(an identifier or free text: it cannot generalise)"))
        else:
            categorical.append(name)
    for name, reason in dropped:
        print(f"tabular-train: column {name!r} is not used: {reason}", flush=True)
    if ignore:
        print(f"tabular-train: ignored as asked: {', '.join(ignore)}", flush=True)
    features = numeric + categorical
    if not features:
        raise InputError(f"no usable feature column is left in {shown} besides the target {target!r}")
    print(f"tabular-train: features: {len(numeric)} numeric ({', '.join(numeric) or '-'}), "
          f"{len(categorical)} categorical ({', '.join(categorical) or '-'})", flush=True)

    fraction = float(p.get("test_fraction", 0.2))
    n_test = math.ceil(len(kept) * fraction)
    if n_test < 2 or len(kept) - n_test < 5:
        raise InputError(f"{len(kept)} rows with a target value and test_fraction {fraction} leave {n_test} "
                         f"test row(s) and {len(kept) - n_test} training row(s): at least 2 and 5 are needed; "
                         f"add rows or change test_fraction")
    return {"table": table, "shown": shown, "target": target, "task": task, "kept": kept, "numeric": numeric,
            "categorical": categorical, "features": features, "dropped": dropped, "ignored": ignore}


# ----- the model ------------------------------------------------------------------------


def build_pipeline(task: str, model: str, n_numeric: int, n_categorical: int, params: dict, cpus: int):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    seed = int(params.get("seed", 0))
    trees = int(params.get("n_estimators", 200))
    depth = params.get("max_depth") or None
    numeric_steps = [("impute", SimpleImputer(strategy="median"))]
    if model == "linear":
        numeric_steps.append(("scale", StandardScaler()))
    dense = model == "gradient_boosting"  # the histogram boosters take dense input only
    categorical_steps = [
        ("impute", SimpleImputer(strategy="constant", fill_value="(missing)")),
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=not dense)),
    ]
    transformers = []
    if n_numeric:
        transformers.append(("numeric", Pipeline(numeric_steps), list(range(n_numeric))))
    if n_categorical:
        transformers.append(("categorical", Pipeline(categorical_steps),
                             list(range(n_numeric, n_numeric + n_categorical))))
    prepare = ColumnTransformer(transformers, sparse_threshold=0 if dense else 0.3)
    classify = task == "classification"
    if model == "random_forest":
        kind = RandomForestClassifier if classify else RandomForestRegressor
        estimator = kind(n_estimators=trees, max_depth=depth, n_jobs=cpus, random_state=seed)
    elif model == "gradient_boosting":
        kind = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        estimator = kind(max_iter=trees, max_depth=depth, random_state=seed)
    else:
        estimator = LogisticRegression(max_iter=2000) if classify else Ridge(alpha=1.0)
    return Pipeline([("prepare", prepare), ("model", estimator)])


def matrix(plan: dict, rows: list[int]):
    """The pipeline's input: numeric features as floats (NaN missing), then categorical ones as text."""
    import numpy as np

    table = plan["table"]
    index = [table.columns.index(c) for c in plan["features"]]
    n_numeric = len(plan["numeric"])
    X = np.empty((len(rows), len(index)), dtype=object)
    for r, i in enumerate(rows):
        row = table.rows[i]
        for c, j in enumerate(index):
            value = row[j]
            if c < n_numeric:
                X[r, c] = as_number(value)
            else:
                X[r, c] = np.nan if is_missing(value) else value
    return X


def labels(plan: dict, rows: list[int]):
    import numpy as np

    values = [plan["table"].rows[i][plan["table"].columns.index(plan["target"])] for i in rows]
    if plan["task"] == "regression":
        return np.array([as_number(v) for v in values], dtype=float)
    if is_numeric(values):  # numeric classes: 1 and 1.0 are the same class, and stay numbers
        numbers = [as_number(v) for v in values]
        if all(float(n).is_integer() for n in numbers):
            return np.array([int(n) for n in numbers])
        return np.array(numbers, dtype=float)
    return np.array(values, dtype=object)


def split(plan: dict, y, fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    positions = list(range(len(plan["kept"])))
    stratify = None
    if plan["task"] == "classification":
        import numpy as np

        _, counts = np.unique(y.astype(str), return_counts=True)
        n_test = math.ceil(len(positions) * fraction)
        if counts.min() >= 2 and n_test >= len(counts) and len(positions) - n_test >= len(counts):
            stratify = y.astype(str)
        else:
            print("tabular-train: some classes are too rare to stratify the split; it is random", flush=True)
    return train_test_split(positions, test_size=fraction, random_state=seed, shuffle=True, stratify=stratify)


def score(task: str, y_train, y_test, predicted) -> tuple[dict, dict]:
    """(the numbers for metrics.jsonl, the details for metrics.json)."""
    import numpy as np
    from sklearn import metrics

    if task == "regression":
        baseline = np.full(len(y_test), float(np.mean(y_train)))
        numbers = {
            "mae": metrics.mean_absolute_error(y_test, predicted),
            "rmse": math.sqrt(metrics.mean_squared_error(y_test, predicted)),
            "r2": metrics.r2_score(y_test, predicted) if len(y_test) > 1 else math.nan,
            "baseline_mae": metrics.mean_absolute_error(y_test, baseline),
        }
        return numbers, {"baseline": "the training rows' mean for every test row"}
    values, counts = np.unique(np.asarray(y_train).astype(str), return_counts=True)
    majority = values[np.argmax(counts)]
    numbers = {
        "accuracy": metrics.accuracy_score(y_test, predicted),
        "f1_macro": metrics.f1_score(y_test, predicted, average="macro", zero_division=0),
        "baseline_accuracy": float(np.mean(np.asarray(y_test).astype(str) == majority)),
    }
    classes = sorted(set(np.asarray(y_train).tolist()) | set(np.asarray(y_test).tolist()), key=str)
    report = metrics.classification_report(y_test, predicted, labels=classes, output_dict=True, zero_division=0)
    confusion = metrics.confusion_matrix(y_test, predicted, labels=classes)
    details = {
        "baseline": f"the training rows' most frequent class ({majority}) for every test row",
        "per_class": {str(c): report[str(c)] for c in classes if str(c) in report},
        "confusion_matrix": {"labels": [str(c) for c in classes], "rows_true_columns_predicted": confusion.tolist()},
    }
    return numbers, details


def train(job: TrainingJob, plan: dict) -> dict:
    import joblib
    import sklearn

    p = job.params
    out = job.output
    for stale in ("metrics.jsonl", "metrics.json", "predictions.csv", "model.joblib"):
        (out / stale).unlink(missing_ok=True)  # a job started again on the same folder starts clean
    shutil.rmtree(out / "tensorboard", ignore_errors=True)

    seed, fraction, model = int(p.get("seed", 0)), float(p.get("test_fraction", 0.2)), p.get("model", "random_forest")
    X, y = matrix(plan, plan["kept"]), labels(plan, plan["kept"])
    train_at, test_at = split(plan, y, fraction, seed)
    pipeline = build_pipeline(plan["task"], model, len(plan["numeric"]), len(plan["categorical"]), p, job.cpus)
    print(f"tabular-train: fitting {model} ({plan['task']}) on {len(train_at)} rows, testing on {len(test_at)}",
          flush=True)
    started = time.monotonic()
    pipeline.fit(X[train_at], y[train_at])
    fit_seconds = time.monotonic() - started
    predicted = pipeline.predict(X[test_at])
    numbers, details = score(plan["task"], y[train_at], y[test_at], predicted)
    numbers = {k: float(v) for k, v in numbers.items()}

    classes = getattr(pipeline, "classes_", None)
    bundle = {
        "pipeline": pipeline, "features": plan["features"], "numeric": plan["numeric"],
        "categorical": plan["categorical"], "target": plan["target"], "task": plan["task"],
        "classes": None if classes is None else classes.tolist(), "model": model,
        "sklearn_version": sklearn.__version__,
        "input": "a 2-D object array, one column per name in features: numbers as floats (NaN when missing), "
                 "categorical values as text (NaN when missing)",
    }
    tmp = out / "model.joblib.tmp"
    joblib.dump(bundle, tmp)
    os.replace(tmp, out / "model.joblib")

    test_rows = [plan["kept"][i] for i in test_at]
    write_predictions(out / "predictions.csv", plan, test_rows, pipeline, X[test_at], predicted, y[test_at])

    report = {
        "task": plan["task"], "model": model, "target": plan["target"], "dataset": plan["shown"],
        "metrics": numbers, **details,
        "rows": {"with_target": len(plan["kept"]), "train": len(train_at), "test": len(test_at),
                 "without_target": len(plan["table"].rows) - len(plan["kept"])},
        "features": {"numeric": plan["numeric"], "categorical": plan["categorical"],
                     "not_used": {name: why for name, why in plan["dropped"]}, "ignored": plan["ignored"]},
        "seed": seed, "test_fraction": fraction, "fit_seconds": round(fit_seconds, 3),
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    job.metrics.write(1, 1, 1, **numbers)
    writer = job.tensorboard()
    for key, value in numbers.items():
        if math.isfinite(value):
            writer.add_scalar(f"test/{key}", value, 1)
    job.close()
    return {"metrics": numbers, "fit_seconds": fit_seconds, "test_rows": test_rows}


def write_predictions(path: Path, plan: dict, rows: list[int], pipeline, X, predicted, actual) -> None:
    import numpy as np

    table = plan["table"]
    target = plan["target"]
    name = f"predicted_{target}"
    extra = []
    probability = None
    if plan["task"] == "classification" and hasattr(pipeline, "predict_proba"):
        probability = pipeline.predict_proba(X).max(axis=1)
        extra = ["probability"]
    elif plan["task"] == "regression":
        extra = ["error"]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        number = "row" if "row" not in table.columns else "csv_row"
        writer.writerow([number, *table.columns, name, *extra])
        for k, i in enumerate(rows):
            value = predicted[k]
            if plan["task"] == "regression":
                cells = [f"{float(value):.6g}", f"{float(value) - float(actual[k]):.6g}"]
            else:
                cells = [value.item() if isinstance(value, np.generic) else value]
                if probability is not None:
                    cells.append(f"{probability[k]:.4f}")
            writer.writerow([i, *table.rows[i], *cells])


if __name__ == "__main__":
    main()
