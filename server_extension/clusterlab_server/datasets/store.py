"""The content-addressed dataset store: one per user, and one for the site.

::

    <root>/objects/<2 hex>/<62 hex>                 file contents by sha256, mode 0444
    <root>/datasets/<name>/<version>/manifest.json  what the version holds (every file, its size and sha256)
    <root>/datasets/<name>/<version>/summary.json   the version JSON without its files (what listings read)
    <root>/datasets/<name>/<version>/files/...      hard links to objects; dirs 0555, files 0444
    <root>/datasets/<name>/next                     the next version number (never reused)
    <root>/outputs/<job id>/{manifest.json,summary.json,files/...}   a job's output, frozen once
    <root>/cache/<name>.json                        stat cache: source path -> [size, mtime_ns, ctime_ns, ino, sha256]
    <root>/staging/<token>/                         a version being made; renamed into place when complete

A version's file is a hard link to its object: an unchanged file costs a directory entry and no data,
the job sees a real file (a Kubernetes subPath mount cannot follow a symlink out of its subPath), and
``st_nlink == 1`` on an object means that no version uses it any more. Files are copied in (never linked
from the source, which the user goes on editing) and hashed as copied, so an object always holds the
bytes of its name. A new version re-hashes only the files whose (size, mtime_ns, ctime_ns, ino) changed
since the last version made from the same folder (git's index trick, with its guard against a file changed
within the same clock tick as it was read).

Nothing here knows about jobs, users or HTTP: refusals are :class:`Refused`, which the service turns into
errors naming the request's field.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20
# a file changed less than this before it was read may change again within the same file-system clock tick
# without its mtime moving: its stat is not trusted next time (git's "racily clean" entries)
RACY_NS = 100_000_000
SPECIAL = {stat.S_IFIFO: "a named pipe (fifo)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
           stat.S_IFBLK: "a block device"}


class Refused(Exception):
    """The folder cannot become a version: ``message`` says why; ``quota`` when it was the quota."""

    def __init__(self, message: str, quota: bool = False):
        super().__init__(message)
        self.message, self.quota = message, quota


@dataclass
class Staged:
    """A version made in staging: its files (manifest entries, by path), the objects it added, its stat cache."""

    folder: Path
    files: list[dict]
    encoded: list[str]  # each file entry as the digest encodes it (sorted keys, no spaces)
    bytes: int
    new_bytes: int
    added: list[str] = field(default_factory=list)  # object paths this version stored anew
    cache: dict = field(default_factory=dict)

    @property
    def digest(self) -> str:
        # == json.dumps(files, sort_keys=True, separators=(",", ":")), from the entries encoded once
        return "sha256:" + hashlib.sha256(("[" + ",".join(self.encoded) + "]").encode()).hexdigest()


def digest_of(files: list[dict]) -> str:
    """A manifest's digest: the sha256 of its ``files`` as compact JSON with sorted keys."""
    return "sha256:" + hashlib.sha256(json.dumps(files, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def scan(folder: Path, skip: set[str] = frozenset()) -> list[tuple[str, str, os.stat_result]]:
    """Every file under ``folder`` as (posix path relative to it, path to read, its stat), sorted by path.

    A symbolic link is what it points to (a file, or a folder walked in turn) when that lies inside
    ``folder``; one pointing outside, or nowhere, or making a loop, is refused, as are fifos, sockets and
    devices. Folders whose real path is in ``skip`` (the dataset stores themselves) are left out.
    """
    top = os.path.realpath(folder)
    found: list[tuple[str, str, os.stat_result]] = []

    def inside(target: str) -> bool:
        return target == top or target.startswith(top.rstrip("/") + "/")

    def walk(path: str, prefix: str, real: str, ancestors: tuple[str, ...]) -> None:
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError as e:
            raise Refused(f"{prefix or './'} cannot be read: {e.strerror}") from None
        for entry in entries:
            name = entry.name
            if not name.isascii():
                try:
                    name.encode()
                except UnicodeEncodeError:
                    raise Refused(f"{prefix}{name.encode(errors='replace').decode()}: the name is not UTF-8") from None
            rel = prefix + name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as e:
                raise Refused(f"{rel} cannot be read: {e.strerror}") from None
            mode = st.st_mode
            if stat.S_ISREG(mode):
                found.append((rel, entry.path, st))
            elif stat.S_ISDIR(mode):
                real_child = real.rstrip("/") + "/" + name
                if real_child not in skip:
                    walk(entry.path, rel + "/", real_child, (*ancestors, real_child))
            elif stat.S_ISLNK(mode):
                target = os.path.realpath(entry.path)
                if not inside(target):
                    raise Refused(f"{rel} is a symbolic link to {target}, outside the folder: copy what it points "
                                  "to into the folder, or make the dataset from a folder that holds both")
                try:
                    st = os.stat(target)
                except OSError:
                    raise Refused(f"{rel} is a symbolic link to {target}, which does not exist") from None
                if stat.S_ISREG(st.st_mode):
                    found.append((rel, target, st))
                elif stat.S_ISDIR(st.st_mode):
                    if target in ancestors:
                        raise Refused(f"{rel} is a symbolic link to {target}, a folder it is in: a loop")
                    if target not in skip:
                        walk(target, rel + "/", target, (*ancestors, target))
                else:
                    raise Refused(f"{rel} points to {SPECIAL.get(stat.S_IFMT(st.st_mode), 'a special file')}: "
                                  "only files and folders can be in a dataset")
            else:
                raise Refused(f"{rel} is {SPECIAL.get(stat.S_IFMT(mode), 'a special file')}: only files and "
                              "folders can be in a dataset")

    walk(str(folder), "", top, (top,))
    found.sort(key=lambda item: item[0])
    return found


def make_writable(folder: Path) -> None:
    """Give back the owner's write bit on ``folder`` and every folder under it (a version's are 0555)."""
    if not folder.exists() or folder.is_symlink():
        return
    os.chmod(folder, 0o700)
    for dirpath, dirnames, _ in os.walk(folder):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o700, follow_symlinks=False)


def remove_tree(folder: Path) -> None:
    make_writable(folder)
    shutil.rmtree(folder, ignore_errors=True)


def write_file(path: Path, text: str, mode: int) -> None:
    """A new file of ``text`` with ``mode``, whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, mode)
        f.write(text)


def replace_file(path: Path, text: str, mode: int) -> None:
    """``path`` becomes ``text`` at once (a new file renamed over it): a reader never sees half of it."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    write_file(tmp, text, mode)
    os.replace(tmp, path)


class DatasetStore:
    """One store: the user's (``shared=False``, root 0700) or the site's (``shared=True``, world readable)."""

    def __init__(self, root: Path, shared: bool):
        self.root, self.shared = Path(root), shared
        self.objects, self.datasets = self.root / "objects", self.root / "datasets"
        self.outputs, self.cache, self.staging = self.root / "outputs", self.root / "cache", self.root / "staging"
        self.dir_mode = 0o755 if shared else 0o700

    # ----- reading ------------------------------------------------------------------

    def exists(self) -> bool:
        return self.datasets.is_dir()

    def names(self) -> list[str]:
        """The datasets that have at least one version, by name."""
        try:
            names = sorted(e.name for e in os.scandir(self.datasets) if e.is_dir(follow_symlinks=False))
        except OSError:
            return []
        return [name for name in names if self.versions(name)]

    def versions(self, name: str) -> list[int]:
        """``name``'s version numbers, oldest first."""
        try:
            return sorted(int(e.name) for e in os.scandir(self.datasets / name) if e.name.isdigit() and e.is_dir())
        except OSError:
            return []

    def version_dir(self, name: str, version: int) -> Path:
        return self.datasets / name / str(version)

    def summary(self, name: str, version: int) -> dict | None:
        return self._read(self.version_dir(name, version) / "summary.json")

    def manifest(self, name: str, version: int) -> dict | None:
        return self._read(self.version_dir(name, version) / "manifest.json")

    def output_dir(self, job_id: str) -> Path:
        return self.outputs / job_id

    def output_summary(self, job_id: str) -> dict | None:
        return self._read(self.output_dir(job_id) / "summary.json")

    @staticmethod
    def _read(path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def object_path(self, sha: str) -> str:
        return f"{self.objects}/{sha[:2]}/{sha[2:]}"

    def usage(self) -> int:
        """The bytes of distinct contents this store holds (what the quota counts)."""
        total = 0
        try:
            buckets = [e.path for e in os.scandir(self.objects) if e.is_dir(follow_symlinks=False)]
        except OSError:
            return 0
        for bucket in buckets:
            with os.scandir(bucket) as it:
                for entry in it:
                    try:
                        total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        pass  # removed meanwhile
        return total

    def read_cache(self, name: str) -> dict:
        return self._read(self.cache / f"{name}.json") or {}

    # ----- making ---------------------------------------------------------------------

    def ensure(self) -> None:
        """The store's folders, made if missing (the root 0700, or 0755 for the site's)."""
        for folder in (self.root, self.objects, self.datasets, self.outputs):
            if not folder.is_dir():
                folder.mkdir(mode=self.dir_mode, parents=True, exist_ok=True)
                os.chmod(folder, self.dir_mode)
        for folder in (self.cache, self.staging):  # the admin's source paths, half-made versions: private
            if not folder.is_dir():
                folder.mkdir(mode=0o700, exist_ok=True)
                os.chmod(folder, 0o700)

    def stage(self, files: list[tuple[str, str, os.stat_result]], cache: dict, room: int | None) -> Staged:
        """Make ``files`` (from :func:`scan`) a version's ``files/`` in a new staging folder.

        ``cache``: a stat cache of an earlier version from the same folder; a file whose stat it holds
        unchanged is linked to the object it names, unread. ``room``: the bytes this store may still take
        anew (None: no limit); the copy that would pass it stops there and the whole is refused. A
        refusal leaves nothing: the staging folder and the objects it added are removed.
        """
        staging = self.staging / secrets.token_hex(8)
        os.mkdir(staging, 0o700)
        top = f"{staging}/files"
        os.mkdir(top, 0o700)
        staged = Staged(folder=staging, files=[], encoded=[], bytes=0, new_bytes=0)
        made = {""}
        encode = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
        link, objects = os.link, f"{self.objects}/"
        try:
            racy_after = time.time_ns() - RACY_NS
            for n, (rel, source, st) in enumerate(files):
                parent = rel.rpartition("/")[0]
                if parent not in made:
                    os.makedirs(f"{top}/{parent}", mode=0o700, exist_ok=True)
                    while parent and parent not in made:
                        made.add(parent)
                        parent = parent.rpartition("/")[0]
                target = f"{top}/{rel}"
                key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
                hit = cache.get(source)
                sha = None
                if hit is not None and hit[:4] == key:
                    try:
                        link(f"{objects}{hit[4][:2]}/{hit[4][2:]}", target)
                        sha, size = hit[4], st.st_size
                    except FileNotFoundError:
                        pass  # its object went with the versions that used it: copy the file again
                    except OSError as e:
                        if e.errno != errno.EMLINK:
                            raise
                        sha, size = hit[4], self._copy_object(hit[4], target, staged)
                if sha is None:
                    sha, size = self._add(rel, source, target, staged, room, n)
                if max(st.st_mtime_ns, st.st_ctime_ns) < racy_after:
                    staged.cache[source] = [*key, sha]
                entry = {"path": rel, "sha256": sha, "size": size}
                staged.files.append(entry)
                staged.encoded.append(encode(entry))
                staged.bytes += size
            for folder in sorted(made, key=len, reverse=True):
                os.chmod(f"{top}/{folder}" if folder else top, 0o555)
        except BaseException:
            self.discard(staged)
            raise
        return staged

    def _add(self, rel: str, source: str, target: str, staged: Staged, room: int | None, n: int) -> tuple[str, int]:
        """Copy ``source`` into the store (hashing what is written), link it at ``target``: (sha256, size)."""
        tmp = f"{staged.folder}/tmp-{n}"
        digest, size, over = hashlib.sha256(), 0, False
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        try:
            src = open(source, "rb", buffering=0)
        except OSError as e:
            raise Refused(f"{rel} cannot be read: {e.strerror}") from None
        with src, open(tmp, "xb", buffering=0) as out:
            while True:
                try:
                    count = src.readinto(buffer)
                except OSError as e:
                    raise Refused(f"{rel} cannot be read: {e.strerror}") from None
                if not count:
                    break
                digest.update(view[:count])
                size += count
                if room is not None and staged.new_bytes + size > room:
                    over = True  # stop writing; whether it is new is known once it is hashed
                    continue
                out.write(view[:count])
            os.fchmod(out.fileno(), 0o444)
        sha = digest.hexdigest()
        path = self.object_path(sha)
        if not over and self._store(tmp, path):
            staged.added.append(path)
            staged.new_bytes += size
            os.rename(tmp, target)  # the object's own inode: one link more
            return sha, size
        os.unlink(tmp)
        if over and not os.path.exists(path):
            raise Refused(f"{rel} would take the dataset store past your quota ({max(room - staged.new_bytes, 0):,} "
                          "bytes were left): delete versions you no longer need, or ask for a larger quota",
                          quota=True)
        try:
            os.link(path, target)
        except FileNotFoundError:  # removed by a version deleted just now: store it again
            return self._add(rel, source, target, staged, room, n)
        except OSError as e:
            if e.errno != errno.EMLINK:
                raise
            self._copy_object(sha, target, staged)
        return sha, size

    def _store(self, tmp: str, path: str) -> bool:
        """Make ``tmp`` the object at ``path``; False when those contents are stored already."""
        for attempt in (1, 2):
            try:
                os.link(tmp, path)
                return True
            except FileExistsError:
                return False
            except FileNotFoundError:  # the first object of its two hex digits
                if attempt == 2:
                    raise
                os.makedirs(os.path.dirname(path), mode=self.dir_mode, exist_ok=True)
                os.chmod(os.path.dirname(path), self.dir_mode)
        return False

    def _copy_object(self, sha: str, target: str, staged: Staged) -> int:
        """An object with as many links as the file system allows (ext4: 65,000): a copy of it instead."""
        shutil.copyfile(self.object_path(sha), target)
        os.chmod(target, 0o444)
        size = os.stat(target).st_size
        staged.new_bytes += size
        return size

    def discard(self, staged: Staged) -> None:
        """Remove a staging folder and the objects it stored that nothing else uses."""
        remove_tree(staged.folder)
        self._collect(staged.added)

    def _collect(self, paths) -> None:
        for path in paths:
            try:
                if os.lstat(path).st_nlink == 1:
                    os.unlink(path)
            except FileNotFoundError:
                pass

    def commit(self, name: str, staged: Staged, header: dict) -> dict:
        """Number ``staged`` (the dataset's ``next``), write its manifest and summary, rename it into place.

        ``header``: the manifest's fields other than name, version, count, bytes, digest and files.
        Returns the summary (the version JSON less ``shared`` and ``path``).
        """
        folder = self.datasets / name
        if not folder.is_dir():
            folder.mkdir(mode=self.dir_mode, exist_ok=True)
            os.chmod(folder, self.dir_mode)
        try:
            with self._locked(folder):
                version = self._next(folder)
                summary = self._finish(staged, {"name": name, "version": version, **header})
                target = folder / str(version)
                os.rename(staged.folder, target)
                os.chmod(target, 0o555)
                replace_file(folder / "next", f"{version + 1}\n", 0o644)
        except BaseException:
            self.discard(staged)
            raise
        return summary

    def _next(self, folder: Path) -> int:
        try:
            number = int((folder / "next").read_text())
        except (OSError, ValueError):
            number = 1
        existing = [int(e.name) for e in os.scandir(folder) if e.name.isdigit()]
        return max([number, *(v + 1 for v in existing)])

    def _finish(self, staged: Staged, header: dict) -> dict:
        """Write ``manifest.json`` (one file a line) and ``summary.json`` into ``staged``; returns the summary."""
        totals = {"count": len(staged.files), "bytes": staged.bytes, "digest": staged.digest}
        head = json.dumps({**header, **totals}, indent=1)[:-2]
        text = head + ',\n "files": [\n' + ",\n".join(staged.encoded) + "\n ]\n}\n"
        mode = 0o444
        write_file(staged.folder / "manifest.json", text, mode)
        summary = {**{k: v for k, v in header.items()}, "digest": totals["digest"], "files": totals["count"],
                   "bytes": staged.bytes, "new_bytes": staged.new_bytes}
        write_file(staged.folder / "summary.json", json.dumps(summary, indent=1) + "\n", mode)
        return summary

    def save_cache(self, name: str, cache: dict) -> None:
        replace_file(self.cache / f"{name}.json", json.dumps(cache), 0o600)

    def commit_output(self, job_id: str, staged: Staged, header: dict) -> dict:
        """Rename a job's staged output into ``outputs/<id>``; when another freeze won, keep that one."""
        target = self.output_dir(job_id)
        try:
            summary = self._finish(staged, header)
            os.rename(staged.folder, target)
            os.chmod(target, 0o555)
        except OSError as e:
            self.discard(staged)
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY) and self.output_summary(job_id):
                return self.output_summary(job_id)
            raise
        except BaseException:
            self.discard(staged)
            raise
        return summary

    def delete(self, name: str, version: int) -> None:
        """Remove a version, then the objects no version uses any more (``st_nlink == 1``)."""
        folder = self.datasets / name
        with self._locked(folder):
            source = self.version_dir(name, version)
            manifest = self.manifest(name, version) or {"files": []}
            trash = self.staging / f"deleted-{secrets.token_hex(8)}"
            os.chmod(source, 0o700)  # a folder moved elsewhere needs its own write bit (its "..")
            os.rename(source, trash)
        remove_tree(trash)
        self._collect(sorted({self.object_path(f["sha256"]) for f in manifest["files"]}))

    @staticmethod
    def _locked(folder: Path):
        return _Lock(folder)


class _Lock:
    """An exclusive flock on a dataset's folder: one version numbered at a time."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __enter__(self):
        self.fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # and with it the lock
