"""ClusterLab's user-side package: the jupyter_server extension of each JupyterLab.

- ``registry``: the job templates (``templates/*/template.yaml``), checked
- ``service``: a template plus parameters becomes a job: validate, folder, submit, record
- ``backends``: local processes and Slurm batch jobs
- ``store``: the per-user job index (SQLite through SQLAlchemy)
- ``handlers``/``openapi``: the REST API under ``/clusterlab/api/``
- ``app``: the ``clusterlab`` ExtensionApp; ``cli``: the ``clusterlab`` command
"""


def _jupyter_server_extension_points():
    from .app import ClusterLabApp

    return [{"module": "clusterlab_server.app", "app": ClusterLabApp}]
