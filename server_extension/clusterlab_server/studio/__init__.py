"""AI Studio: from unlabelled images to a published model, one recorded chain per labelling (docs/ai-studio.md).

- :mod:`.labellings`: a labelling (a frozen set of pictures, a kind, classes) and its Label Studio project;
- :mod:`.label_studio`: the user's own Label Studio, behind their JupyterLab (docs/label-studio.md);
- :mod:`.export`: labels written as a dataset version in the templates' layouts, split reproducibly;
- :mod:`.models`: the model registry: named models, versions 1, 2, ...;
- :mod:`.publish`: a model version pushed to a git repository, with its model card;
- :mod:`.service`: the chain's steps for the REST API and the CLI (one function decides each);
- :mod:`.handlers`, :mod:`.openapi`, :mod:`.cli`: the REST API, its description, the ``clusterlab studio`` commands.
"""


def __getattr__(name: str):
    # lazily: the jupyter server imports the package for its handlers; the service pulls in datasets and more
    if name == "StudioService":
        from .service import StudioService

        return StudioService
    raise AttributeError(name)
