"""ClusterLab's hub-side package: instance sizes, the spawn form and the backends.

- ``profiles``: ``profiles.yaml`` loaded and validated
- ``options``: ``user_options`` checked (profile, hours, quotas)
- ``pool``: GPUs and cores handed out on one machine
- ``spawner``: ``ClusterSpawner``, the backend-agnostic form and rules
- ``availability``: what is free now per profile (free, queue, impossible), shared with
  the job service; side-effect free
- ``local``: the local-process backend (the embedded default)
- ``slurm``: the Slurm backend (batchspawner's SlurmSpawner, fixed); ``slurm_queue``:
  one squeue and one sinfo for the whole hub; ``slurm_directives``: sizes to #SBATCH lines
- ``accounts``: which Unix account a hub user's servers and jobs run as (system accounts
  refused, missing ones created where allowed); what a hub that cannot separate users says
- ``auth``: the embedded default's authenticator
"""
