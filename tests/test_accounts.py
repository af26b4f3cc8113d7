"""Which hub users may run as a Unix account: the one check the local and Slurm backends share."""

import pwd

import pytest
from clusterlab_spawner import accounts
from clusterlab_spawner.options import OptionsError


def check(name, min_uid=1000, denied=frozenset(), may_create=False):
    return accounts.check_account(name, min_uid=min_uid, denied=denied, may_create=may_create)


@pytest.mark.parametrize("name, message", [
    ("root", "'root' is a system account"),
    ("nobody", "'nobody' is a system account"),
    ("daemon", "uid 1, below min_uid 1000"),
    ("bin", "uid 2, below min_uid 1000"),
    ("Alice", "cannot be a Unix account"),
    ("a.b", "cannot be a Unix account"),
    ("-rf", "cannot be a Unix account"),
    ("x" * 33, "cannot be a Unix account"),
    ("staff", "a group of that name exists"),  # a system group, no account: useradd would join it
])
def test_system_accounts_and_bad_names_are_refused(name, message):
    with pytest.raises(OptionsError) as refused:
        check(name, may_create=True)
    assert message in refused.value.message
    assert refused.value.field == "user"


def test_a_missing_account_is_made_only_where_allowed():
    name = "clusterlab-nosuchuser"
    with pytest.raises(OptionsError, match="ask an administrator to create it"):
        check(name)
    assert check(name, may_create=True) is None  # to be created


def fake_account(name, uid):
    return pwd.struct_passwd((name, "x", uid, uid, "", f"/home/{name}", "/bin/bash"))


def test_an_ordinary_account_is_used_and_the_site_may_deny_or_raise_the_floor(monkeypatch):
    monkeypatch.setattr(accounts.pwd, "getpwnam", lambda name: fake_account(name, 1500))
    assert check("carol").pw_uid == 1500
    with pytest.raises(OptionsError, match="'carol' is a system account"):
        check("carol", denied={"carol"})
    with pytest.raises(OptionsError, match="uid 1500, below min_uid 2000"):
        check("carol", min_uid=2000)


def test_uid_zero_is_refused_whatever_min_uid_says(monkeypatch):
    monkeypatch.setattr(accounts.pwd, "getpwnam", lambda name: fake_account(name, 0))
    with pytest.raises(OptionsError, match="uid 0"):
        check("toor", min_uid=0)
