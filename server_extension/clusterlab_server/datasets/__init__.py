"""Datasets: named, numbered, frozen versions of a folder, and jobs' outputs frozen as inputs.

- :mod:`.store`: the content-addressed store (one per user, one for the site), hard links and a stat cache;
- :mod:`.service`: create / list / show / delete / preview, and job inputs checked and pinned.
"""


def __getattr__(name: str):
    # lazily: the job service imports this package when it first needs it, and the service imports the job service
    if name == "DatasetService":
        from .service import DatasetService

        return DatasetService
    raise AttributeError(name)
