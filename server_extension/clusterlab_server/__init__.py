"""ClusterLab's user-side package: the jupyter_server extension that will hold
the templates registry, the job service, TensorBoard and the CLI.

It is empty so far: the hub side (``clusterlab_spawner``) came first. The job
service is tracked as its own issue.
"""
