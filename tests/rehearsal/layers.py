"""Image layers from root file system trees, and `docker load` of images made of them.

A stand-in is the shared Debian minbase layer plus one layer of its own: the
difference between the minbase tree and the tree after its packages were
installed. The difference is written as Docker's image layer format
(moby/moby pkg/archive/changes.go ``ExportChanges``: added and changed paths
as tar entries, a deleted path as an empty ``.wh.<name>`` entry), so one
``docker load`` of an archive in `docker save`'s layout (moby
image/tarexport/load.go: ``manifest.json``, each image's config, each layer
once) gives every stand-in, and the minbase layer is stored once, as a real
Debian-based image's base layer is. `docker load` skips a layer whose chain
the daemon already has (load.go ``ls.Get(rootFS.ChainID())``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["Layer", "LoadImage", "diff_layer", "docker_load", "image_id", "tree_layer"]

# Folders whose contents are never part of a layer: the runtime mounts them, or
# they are apt's caches (the official images leave them empty too).
_CONTENTS_SKIPPED = frozenset(
    {"proc", "sys", "dev", "tmp", "var/tmp", "var/lib/apt/lists", "var/cache/apt"}
)


@dataclass(frozen=True)
class Layer:
    tar: Path
    diff_id: str
    """``sha256:`` of the uncompressed tar, as the image config lists it."""
    size: int


@dataclass(frozen=True)
class LoadImage:
    tag: str
    config: dict[str, Any]
    """The image config's ``config`` (User, Entrypoint, Cmd, Env, ...)."""
    layers: tuple[Layer, ...]
    history: tuple[str, ...]
    """One ``created_by`` line per layer, shown by ``docker history``."""
    created: str


def _walk(root: Path) -> Iterator[str]:
    """Relative paths below ``root``, parents first, in a stable order; a folder of
    ``_CONTENTS_SKIPPED`` is listed, its contents not."""
    for folder, dirs, files in os.walk(root):
        relative = os.path.relpath(folder, root)
        prefix = "" if relative == "." else f"{relative}/"
        names = sorted([*dirs, *files])
        dirs[:] = sorted(d for d in dirs if f"{prefix}{d}" not in _CONTENTS_SKIPPED)
        yield from (f"{prefix}{name}" for name in names)


def _signature(path: Path) -> tuple[int, int, int, int, int, str]:
    st = path.lstat()
    link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
    size = 0 if stat.S_ISDIR(st.st_mode) else st.st_size
    return st.st_mode, st.st_uid, st.st_gid, size, st.st_mtime_ns, link


def _add(archive: tarfile.TarFile, root: Path, relative: str) -> None:
    info = archive.gettarinfo(str(root / relative), arcname=relative)
    info.uname = info.gname = ""  # numeric owners, as `tar --numeric-owner`
    if info.isreg():
        with (root / relative).open("rb") as data:
            archive.addfile(info, data)
    else:
        archive.addfile(info)


class _Hashing:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.sha, self.size = out, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.out.write(data)


def _write_layer(tar: Path, fill: Any) -> Layer:
    part = tar.with_suffix(f".{os.getpid()}.part")
    with part.open("wb") as raw:
        hashing = _Hashing(raw)
        with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as archive:  # type: ignore[call-overload]
            fill(archive)
    part.replace(tar)
    return Layer(tar, f"sha256:{hashing.sha.hexdigest()}", hashing.size)


def tree_layer(root: Path, tar: Path) -> Layer:
    """The whole tree as a base layer."""

    def fill(archive: tarfile.TarFile) -> None:
        for relative in _walk(root):
            _add(archive, root, relative)

    return _write_layer(tar, fill)


def diff_layer(base: Path, root: Path, tar: Path) -> Layer:
    """What turns ``base`` into ``root``: changed and new paths, and whiteouts."""

    def fill(archive: tarfile.TarFile) -> None:
        before = {relative: _signature(base / relative) for relative in _walk(base)}
        seen: set[str] = set()
        for relative in _walk(root):
            seen.add(relative)
            if before.get(relative) != _signature(root / relative):
                _add(archive, root, relative)
        gone = sorted(set(before) - seen)
        for relative in gone:
            parent = relative.rpartition("/")[0]
            if parent in gone:
                continue  # the parent's whiteout covers it
            head, _, name = relative.rpartition("/")
            info = tarfile.TarInfo(f"{head}/.wh.{name}" if head else f".wh.{name}")
            archive.addfile(info)

    return _write_layer(tar, fill)


def _config(image: LoadImage) -> bytes:
    body = {
        "architecture": "amd64",
        "os": "linux",
        "created": image.created,
        "config": image.config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in image.layers]},
        "history": [{"created": image.created, "created_by": line} for line in image.history],
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def image_id(image: LoadImage) -> str:
    """The ID the daemon gives the loaded image: the digest of its config."""
    return f"sha256:{hashlib.sha256(_config(image)).hexdigest()}"


def _member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def docker_load(docker: Sequence[str], env: dict[str, str], images: Sequence[LoadImage]) -> None:
    """Stream one `docker save`-layout archive of ``images`` into `docker load`."""
    with subprocess.Popen([*docker, "load", "--quiet"], env=env, stdin=subprocess.PIPE,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:  # fmt: skip
        assert proc.stdin is not None and proc.stderr is not None
        manifest, written = [], set()
        try:
            with tarfile.open(fileobj=proc.stdin, mode="w|", format=tarfile.PAX_FORMAT) as archive:
                for image in images:
                    config = _config(image)
                    name = f"{hashlib.sha256(config).hexdigest()}.json"
                    _member(archive, name, config)
                    layers = [
                        f"{layer.diff_id.split(':', 1)[1]}/layer.tar" for layer in image.layers
                    ]
                    for layer, member in zip(image.layers, layers, strict=True):
                        if member not in written:
                            archive.add(str(layer.tar), arcname=member)
                            written.add(member)
                    manifest.append({"Config": name, "RepoTags": [image.tag], "Layers": layers})
                _member(archive, "manifest.json", json.dumps(manifest).encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the daemon refused the stream; its message follows
        err = proc.stderr.read().decode()
        proc.wait(timeout=900)
    assert proc.returncode == 0, f"docker load of {len(images)} images failed: {err}"
