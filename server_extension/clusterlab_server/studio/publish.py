"""A model version pushed to a git repository the user names, with dulwich (pure Python git).

What is pushed is one commit on the named branch, on top of what the branch holds already, whose tree is
the version's files at the repository's root (``README.md``, the model card; ``model.pt``; ``model.json``,
the record; ``report/`` when it was validated), and a tag ``<model>-v<version>`` on it. An application
clones the branch (the latest published version) or the tag (that one).

URLs: ``file://`` (a path inside the user's folders, e.g. a bare repository on a shared disk),
``ssh://`` or ``user@host:path`` (dulwich runs the ``ssh`` program: the user's keys and known hosts, no
shell), ``https://`` (credentials in the URL or none). Nothing else: ``git://`` and ``http://`` carry no
authentication, ``ext::`` runs commands. Large files go in as ordinary blobs: git LFS is not installed on
these machines, so it is not used (docs/ai-studio.md).
"""

from __future__ import annotations

import os
import re
import stat
import time
import urllib.parse
from pathlib import Path

from ..service import JobError

SCP_RULE = re.compile(  # user@host:path, ssh's short form; neither part may start with "-" (an ssh option)
    r"^(?P<user>[A-Za-z0-9][A-Za-z0-9._-]*)@(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*):(?P<path>[^/].*|/.+)$")
HOST_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?$")
BRANCH_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")
PUSH_TIMEOUT = 120


def check_repository(url: object, resolve_path) -> str:
    """``url`` if it may be pushed to; ``resolve_path`` (the job service's) keeps a file:// path inside the
    user's folders. Refusals name the field ``repository``."""
    if not isinstance(url, str) or not url or len(url) > 2000 or any(c.isspace() or ord(c) < 32 for c in url):
        raise JobError(400, "repository must be the URL of a git repository (https://, ssh:// or file://)",
                       "repository")
    if SCP_RULE.match(url):
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise JobError(400, "repository: a file:// URL names a path on this machine (file:///...)", "repository")
        try:
            folder = resolve_path(urllib.parse.unquote(parts.path))
        except ValueError as e:
            raise JobError(400, f"repository: {e}", "repository") from None
        if not folder.is_dir():
            raise JobError(400, f"repository: {parts.path} is not a git repository (a folder)", "repository")
        return url
    if parts.scheme in ("https", "ssh"):
        if not parts.hostname or not HOST_RULE.match(parts.netloc.rpartition("@")[2]):
            raise JobError(400, f"repository: {parts.scheme}:// needs a host name", "repository")
        return url
    shown = f"{parts.scheme}://" if parts.scheme else url[:40]
    raise JobError(400, f"repository: only https://, ssh:// (or user@host:path) and file:// repositories may be "
                   f"published to, not {shown}", "repository")


def check_branch(value: object) -> str | None:
    """A branch name, or None: the repository's default branch (where its HEAD points), else main."""
    if value is None:
        return None
    branch = value
    if not isinstance(branch, str) or not BRANCH_RULE.match(branch) or ".." in branch or branch.endswith(
            (".lock", "/", ".")) or "//" in branch:
        raise JobError(400, "branch must be a git branch name (letters, digits, . _ - /)", "branch")
    return branch


def _tree_entries(files: dict[str, Path]) -> list[tuple[str, Path]]:
    """(path in the repository, file on disk) for every file, folders walked."""
    entries = []
    for name, source in sorted(files.items()):
        if source.is_dir():
            for top, dirs, names in os.walk(source):
                dirs.sort()
                for file_name in sorted(names):
                    path = Path(top, file_name)
                    entries.append((f"{name}/{path.relative_to(source).as_posix()}", path))
        else:
            entries.append((name, source))
    return entries


def push(url: str, branch: str | None, tag: str, files: dict[str, Path], message: str, author: str) -> dict:
    """One commit of ``files`` on ``branch`` of ``url``, tagged ``tag``: ``{"commit", "tag", "branch"}``.

    Nothing of the repository is fetched but its refs: the new commit names its parent by id, and the pack
    sent holds only the new objects (a repository of many versions costs no more to publish to). Both refs
    are updated at once (an atomic push) or neither. A refusal (unreachable, not a repository, the branch
    moved meanwhile, the tag taken) is a JobError naming ``repository``; nothing was changed there then.
    """
    from dulwich.client import get_transport_and_path
    from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
    from dulwich.objects import Blob, Commit, Tree
    from dulwich.pack import pack_objects_to_data
    from dulwich.repo import MemoryRepo

    tag_ref = f"refs/tags/{tag}".encode()
    try:
        client, path = get_transport_and_path(url)
        # the refs, and where HEAD points (a plain ls-remote leaves that out of an empty repository)
        found = client.fetch(path, MemoryRepo(), determine_wants=lambda refs, depth=None: [])
        if branch is None:  # where a clone checks out
            head = (found.symrefs or {}).get(b"HEAD", b"")
            branch = head[len(b"refs/heads/"):].decode() if head.startswith(b"refs/heads/") else "main"
        branch_ref = f"refs/heads/{branch}".encode()
        if tag_ref in found.refs:
            raise JobError(409, f"repository: it has a tag {tag} already (published before?)", "repository")
        parent = found.refs.get(branch_ref)
        new_objects: dict[bytes, object] = {}
        trees: dict[str, Tree] = {"": Tree()}
        for name, source in _tree_entries(files):
            blob = Blob.from_string(source.read_bytes())
            new_objects[blob.id] = blob
            folder, _, leaf = name.rpartition("/")
            _tree(trees, folder).add(leaf.encode(), stat.S_IFREG | 0o644, blob.id)
        for folder in sorted(trees, key=lambda f: -f.count("/") if f else 1):  # the deepest first, the root last
            if folder:
                parent_folder, _, leaf = folder.rpartition("/")
                _tree(trees, parent_folder).add(leaf.encode(), stat.S_IFDIR, trees[folder].id)
        for tree in trees.values():
            new_objects[tree.id] = tree
        commit = Commit()
        commit.tree = trees[""].id
        commit.parents = [parent] if parent else []
        commit.author = commit.committer = author.encode()
        commit.author_time = commit.commit_time = int(time.time())
        commit.author_timezone = commit.commit_timezone = 0
        commit.encoding = b"UTF-8"
        commit.message = message.encode()
        new_objects[commit.id] = commit

        def update_refs(remote_refs):  # only ours: HEAD among them, it would be set too (and refused)
            return {branch_ref: commit.id, tag_ref: commit.id}

        def pack_data(have, want, ofs_delta=False, progress=None):
            return pack_objects_to_data([o for sha, o in new_objects.items() if sha not in have])

        result = client.send_pack(path, update_refs, pack_data, atomic=True)
    except JobError:
        raise
    except (GitProtocolError, HangupException, NotGitRepository, OSError, ValueError, KeyError) as e:
        raise JobError(502, f"repository: the push to {url} failed: {e or type(e).__name__}", "repository") from None
    refused = {ref.decode(): why for ref, why in (result.ref_status or {}).items() if why}
    if refused:
        said = "; ".join(f"{ref}: {why}" for ref, why in refused.items())
        raise JobError(502, f"repository: {url} refused the push ({said})", "repository")
    return {"commit": commit.id.decode(), "tag": tag, "branch": branch}


def _tree(trees: dict, folder: str):
    """The tree of ``folder`` (``a/b``), made with its parents when first asked for."""
    from dulwich.objects import Tree

    if folder not in trees:
        trees[folder] = Tree()
        if folder:
            _tree(trees, folder.rpartition("/")[0])
    return trees[folder]
