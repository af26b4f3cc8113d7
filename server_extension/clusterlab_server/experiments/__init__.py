"""Experiments: hyperparameter search over ordinary jobs, on Optuna (see docs/experiments.md).

- :mod:`.spec`: the request, checked (one function for the form, the API and the CLI);
- :mod:`.controller`: ask-and-tell over trial jobs, early stopping from their metrics.jsonl;
- :mod:`.service`: create / list / show / cancel / delete / results, for the API and the CLI;
- :mod:`.store`: the experiments' table, beside the jobs'.
"""



def __getattr__(name: str):
    # lazily: ``python -m clusterlab_server.experiments.controller`` must not find the controller imported already
    if name == "ExperimentService":
        from .service import ExperimentService

        return ExperimentService
    raise AttributeError(name)
