# The two front doors: `make run` and `make test`. Both set up what they need.
# Debian's own Python (3.11 on Debian 12) when there is one: Slurm jobs run this
# environment as each user, so its interpreter must not live in a private
# folder (a pyenv under /root, say).
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
# pip's progress bars and spinners on a terminal; in a log (CI), one plain line per step
PIP_INSTALL = $(BIN)/python -m pip install --progress-bar $$(test -t 1 && echo on || echo off)
# Label Studio (labelling, docs/label-studio.md) in a virtual environment of its own: it pins its own
# Django, DRF and friends, which are none of ours
LS_VENV    ?= .venv-label-studio
LS_VERSION := 1.23.2
# its database, migrated and empty: a user's first start copies it rather than migrating (seconds, not a minute)
LS_LAUNCH   := server_extension/clusterlab_server/studio/label_studio_launch.py
LS_TEMPLATE := $(LS_VENV)/clusterlab-template.sqlite3

.PHONY: run upgrade-db test setup slurm slurm-cluster slurm-cluster-down clean

setup: $(VENV)/.installed node_modules/.installed $(LS_VENV)/.installed $(LS_TEMPLATE)

# Re-installs only when pyproject.toml or the lab extension changes (the Python
# code is editable; the lab extension is built by the package build).
LABEXTENSION_SOURCES := $(wildcard labextension/src/* labextension/style/* labextension/schema/*) \
	labextension/package.json labextension/yarn.lock
$(VENV)/.installed: pyproject.toml $(LABEXTENSION_SOURCES)
	@echo "==> Installing ClusterLab's Python packages into $(VENV): JupyterHub, JupyterLab, PyTorch, TensorBoard..."
	@echo "    (a few minutes on a first run; pip names each package as it goes, then builds the lab extension)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "installing python3-venv (Debian)"; apt-get install -y -q python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PIP_INSTALL) --quiet --upgrade pip
	$(PIP_INSTALL) -e '.[test,ai]'
	@echo "==> $(VENV) is ready"
	touch $@

$(LS_VENV)/.installed: Makefile
	@echo "==> Installing Label Studio $(LS_VERSION) into $(LS_VENV): the labelling tool each user's JupyterLab opens..."
	@echo "    (its own environment, as its pinned dependencies clash with ours; about a minute and a half)"
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --progress-bar $$(test -t 1 && echo on || echo off) --quiet --upgrade pip
	$(LS_VENV)/bin/python -m pip install --progress-bar $$(test -t 1 && echo on || echo off) 'label-studio==$(LS_VERSION)'
	@echo "==> $(LS_VENV) is ready"
	touch $@

# migrated in a scratch home that is then removed: no user, token or secret key in it (docs/label-studio.md)
$(LS_TEMPLATE): $(LS_VENV)/.installed $(LS_LAUNCH)
	@echo "==> Migrating an empty Label Studio database once, for every user's first start (half a minute)..."
	$(LS_VENV)/bin/python $(LS_LAUNCH) --template $@ > $@.log 2>&1 || { cat $@.log; exit 1; }
	@grep '^ClusterLab' $@.log

node_modules/.installed: package.json package-lock.json
	@echo "==> Installing Node tools into node_modules: configurable-http-proxy (the hub's proxy), axe-core (browser tests)..."
	npm ci --no-audit --no-fund
	touch $@

run: setup
	$(BIN)/jupyterhub -f hub_config/jupyterhub_config.py

# After an upgrade of JupyterHub, before the hub's next start (docs/hub-database.md).
# upgrade-db runs `alembic` by its bare name: the venv's bin goes first on PATH.
upgrade-db: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/jupyterhub upgrade-db -f hub_config/jupyterhub_config.py

test: setup
	bash tests/setup-services.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# A real single-node Slurm (munge, slurmctld, slurmd, two fake GPUs) on this
# machine, by the all-in-one Ansible inventory. Needs root.
slurm: $(VENV)/.ansible
	ANSIBLE_CONFIG=ansible/ansible.cfg $(BIN)/ansible-playbook -i ansible/inventories/all-in-one ansible/site.yml

# A multi-node test cluster beside it: a head (slurmctld, hub) and two compute
# nodes (a slurmd each, 2 fake GPUs) in network namespaces on a private bridge,
# cluster clusterlab-netns, SLURM_CONF=/etc/slurm-netns/slurm.conf. Its hosts
# are all this machine, so they take turns (--forks 1). Needs root.
NETNS_INVENTORY := ansible/inventories/netns-cluster
slurm-cluster: $(VENV)/.ansible
	ANSIBLE_CONFIG=ansible/ansible.cfg $(BIN)/ansible-playbook -i $(NETNS_INVENTORY)/hosts.yml --forks 1 \
		$(NETNS_INVENTORY)/network.yml ansible/site.yml

slurm-cluster-down: $(VENV)/.ansible
	ANSIBLE_CONFIG=ansible/ansible.cfg $(BIN)/ansible-playbook -i $(NETNS_INVENTORY)/hosts.yml \
		$(NETNS_INVENTORY)/teardown.yml

$(VENV)/.ansible: ansible/requirements.txt $(VENV)/.installed
	@echo "==> Installing Ansible into $(VENV)..."
	$(PIP_INSTALL) -r ansible/requirements.txt
	touch $@

clean:
	rm -rf $(VENV) $(LS_VENV) node_modules .clusterlab test-artifacts
