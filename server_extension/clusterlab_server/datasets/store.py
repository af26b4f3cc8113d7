"""The content-addressed dataset store: one per user, and one for the site.

::

    <root>/objects/<2 hex>/<62 hex>                 file contents by sha256, mode 0444
    <root>/versions/<name>/<version>/manifest.json  what the version holds (every file, its size and sha256)
    <root>/versions/<name>/<version>/summary.json   the version JSON without its files (what listings read)
    <root>/versions/<name>/<version>/files/...      hard links to objects; dirs 0555, files 0444
    <root>/versions/<name>/next                     the next version number (never reused)
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

import ctypes
import errno
import functools
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import stat
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

quote = json.encoder.encode_basestring_ascii
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


def _describe(mode: int) -> str:
    return SPECIAL.get(stat.S_IFMT(mode), "a special file")


def _pool() -> ThreadPoolExecutor:
    """Threads for the walk: each waits on the file system (stat, link) with the GIL released, so that
    the folders of a large dataset are read and linked side by side."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="datasets")
    return _POOL


_POOL: ThreadPoolExecutor | None = None


@dataclass
class _Folder:
    """One folder of the walk: where it is read from, its path in the version, its real path, its ancestors'."""

    path: str
    rel: str  # "" for the top, else "a/b/"
    real: str
    ancestors: tuple[str, ...]


class _Walk:
    """The source folder walked, folder by folder in threads, into a staging ``files/`` folder.

    A file whose stat the cache holds unchanged is linked to its object at once (``hits``); the others
    (``misses``) are copied afterwards, one at a time, by :meth:`DatasetStore.stage`. A symbolic link is
    what it points to (a file, or a folder walked in turn) when that lies inside the folder; one pointing
    outside, or nowhere, or making a loop is refused, as are fifos, sockets and devices. Folders whose
    real path is in ``skip`` (the dataset stores themselves) are left out.
    """

    def __init__(self, folder: Path, top: str, skip, cache: dict, objects: str):
        self.real_top = os.path.realpath(folder)
        self.folder, self.top, self.skip, self.cache, self.objects = str(folder), top, skip, cache, objects
        self.hits: list[tuple[str, str, int, str, list]] = []  # (rel, sha256, size, source, stat key)
        self.misses: list[tuple[str, str, os.stat_result]] = []  # (rel, source, stat)
        self.folders: list[str] = [top]

    def run(self) -> None:
        pool = _pool()
        pending = {pool.submit(self._read, _Folder(self.folder, "", self.real_top, (self.real_top,)))}
        failure = None
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    hits, misses, folders = future.result()
                except BaseException as e:  # noqa: BLE001 - raised once every folder under way has finished
                    failure = failure or e
                    continue
                self.hits.extend(hits)
                self.misses.extend(misses)
                if failure is None:
                    for child in folders:
                        os.mkdir(f"{self.top}/{child.rel}", 0o700)
                        self.folders.append(f"{self.top}/{child.rel}")
                    pending |= {pool.submit(self._read, child) for child in folders}
        if failure is not None:
            raise failure

    def _read(self, folder: _Folder):
        """One folder: its files linked or listed, its subfolders returned (made by the caller)."""
        hits, misses, folders = [], [], []
        prefix, target = folder.rel, f"{self.top}/{folder.rel}"
        cache, objects, link = self.cache, self.objects, os.link
        try:
            with os.scandir(folder.path) as it:
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
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as e:
                raise Refused(f"{prefix}{name} cannot be read: {e.strerror}") from None
            mode, source = st.st_mode, entry.path
            if stat.S_ISLNK(mode):
                source, st = self._follow(prefix + name, entry.path)
                mode = st.st_mode
                if stat.S_ISDIR(mode):
                    if source in folder.ancestors:
                        raise Refused(f"{prefix}{name} is a symbolic link to {source}, a folder it is in: a loop")
                    if source not in self.skip:
                        folders.append(_Folder(source, f"{prefix}{name}/", source, (*folder.ancestors, source)))
                    continue
            if stat.S_ISREG(mode):
                key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
                hit = cache.get(source)
                if hit is not None and hit[:4] == key:
                    sha = hit[4]
                    try:
                        link(f"{objects}{sha[:2]}/{sha[2:]}", f"{target}{name}")
                        hits.append((prefix + name, sha, st.st_size, source, key))
                        continue
                    except OSError as e:  # its object went with the versions that used it; or too many links
                        if e.errno not in (errno.ENOENT, errno.EMLINK):
                            raise
                misses.append((prefix + name, source, st))
            elif stat.S_ISDIR(mode):
                real = f"{folder.real.rstrip('/')}/{name}"
                if real not in self.skip:
                    folders.append(_Folder(entry.path, f"{prefix}{name}/", real, (*folder.ancestors, real)))
            else:
                raise Refused(f"{prefix}{name} is {_describe(mode)}: only files and folders can be in a dataset")
        return hits, misses, folders

    def _follow(self, rel: str, path: str) -> tuple[str, os.stat_result]:
        target = os.path.realpath(path)
        if not (target == self.real_top or target.startswith(self.real_top.rstrip("/") + "/")):
            raise Refused(f"{rel} is a symbolic link to {target}, outside the folder: copy what it points to "
                          "into the folder, or make the dataset from a folder that holds both")
        try:
            st = os.stat(target)
        except OSError:
            raise Refused(f"{rel} is a symbolic link to {target}, which does not exist") from None
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise Refused(f"{rel} points to {_describe(st.st_mode)}: only files and folders can be in a dataset")
        return target, st


def sync_file_system(folder: Path) -> None:
    """What was written on ``folder``'s file system is on disk (Linux's syncfs): a version made visible
    after it never names an object that a power cut left empty. One call for all of a version's files,
    where an fsync per file would wait for the disk once per file."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        if _libc().syncfs(fd) != 0:
            os.fsync(fd)  # not Linux's syncfs: at least the folder
    finally:
        os.close(fd)


@functools.cache
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def make_writable(folder: Path | str) -> None:
    """Give back the owner's write bit on ``folder`` and every folder under it (a version's are 0555, as is
    a job's ``input/``); links (a job's inputs) are not followed: what they point to stays as it is."""
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return
    os.chmod(folder, 0o700)
    for dirpath, dirnames, _ in os.walk(folder):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o700)


def remove_tree(folder: Path | str) -> None:
    """``rm -rf``, also through read-only folders."""
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
        self.objects, self.datasets = self.root / "objects", self.root / "versions"
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

    def stage(self, folder: Path, cache: dict, room: int | None, skip=frozenset()) -> Staged:
        """Make the files under ``folder`` a version's ``files/`` in a new staging folder.

        ``cache``: the stat cache of an earlier version from the same folder: a file whose stat it holds
        unchanged is linked to the object it names, unread. ``room``: the bytes this store may still take
        anew (None: no limit); the copy that would pass it stops there and the whole is refused. ``skip``:
        real paths of folders left out. A refusal leaves nothing: the staging folder and the objects it
        added are removed.
        """
        staging = self.staging / secrets.token_hex(8)
        os.mkdir(staging, 0o700)
        staged = Staged(folder=staging, files=[], encoded=[], bytes=0, new_bytes=0)
        walk = _Walk(folder, f"{staging}/files/", skip, cache, f"{self.objects}/")
        try:
            os.mkdir(walk.top, 0o700)
            racy_after = time.time_ns() - RACY_NS
            walk.run()
            if not walk.hits and not walk.misses:
                raise Refused(f"{folder} holds no files")
            found = [(rel, sha, size, source, key) for rel, sha, size, source, key in walk.hits]
            for n, (rel, source, st) in enumerate(sorted(walk.misses, key=lambda m: m[0])):
                sha, size = self._add(rel, source, walk.top + rel, staged, room, n)
                found.append((rel, sha, size, source, [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]))
            found.sort(key=lambda f: f[0])
            for rel, sha, size, source, key in found:
                if key[1] < racy_after and key[2] < racy_after:
                    staged.cache[source] = [*key, sha]
                staged.files.append({"path": rel, "sha256": sha, "size": size})
                # as json.dumps(entry, sort_keys=True, separators=(",", ":")) writes it, a tenth of the time
                staged.encoded.append(f'{{"path":{quote(rel)},"sha256":"{sha}","size":{size}}}')
                staged.bytes += size
            for path in reversed(walk.folders):  # deepest last made: first closed
                os.chmod(path, 0o555)
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
                sync_file_system(staged.folder)
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
        """The stat cache for the next version of ``name``. The old one goes first: a rename over an existing
        file makes ext4 write the new one out at once (auto_da_alloc), which a cache need not wait for; a
        reader in between finds none and reads the folder's files again."""
        path = self.cache / f"{name}.json"
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        write_file(tmp, json.dumps(cache), 0o600)
        path.unlink(missing_ok=True)
        os.rename(tmp, path)

    def commit_output(self, job_id: str, staged: Staged, header: dict) -> dict:
        """Rename a job's staged output into ``outputs/<id>``; when another freeze won, keep that one."""
        target = self.output_dir(job_id)
        try:
            summary = self._finish(staged, header)
            sync_file_system(staged.folder)
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
        return FolderLock(folder)


class FolderLock:
    """An exclusive flock on a folder (a dataset's, a registered model's): one version numbered at a time."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __enter__(self):
        self.fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # and with it the lock
