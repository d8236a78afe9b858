"""Every image the rendered Docker stack names, in a private Docker daemon.

The interface the rehearsal uses (scripts/rehearse, tests/rehearsal/), kept stable::

    ensure_images(host: DockerHost, tags: Iterable[str], *, cache: Path | None = None)
        -> ImageReport
    report.images     # ImageResult per tag made: tag, kind ("stand-in" | "built"),
                      # source, upstream, seconds (0 when cached), package, version
    report.left_out   # the tags with no Debian program (Grafana, Elastic)
    report.table()    # the Markdown table for the rehearsal's report
    build_shipped(host, context, tag)   # one more real build (e.g. an app bump)

A tag that is none of the three kinds below raises ValueError naming it (one
line, before the daemon is asked anything). The postgres stand-in that
images/postgres builds FROM is made even when the tags do not name it.

For each tag:

- a **stand-in** (tests/rehearsal/stand_ins.py has the recipes and the table of the
  upstream Dockerfiles and entrypoints each follows): the shared bookworm minbase
  (tests/real/node_base.py ``minbase_rootfs``: debootstrap with the archive
  keyring, so the Release signature is checked) plus one layer of Debian packages,
  loaded under the pinned tag into this daemon only, which can never reach a
  registry. All stand-ins come in one `docker load` (tests/rehearsal/layers.py),
  so the minbase layer is stored once;
- a **shipped image**, built by a real ``docker build`` of this repository's own
  Dockerfile on that daemon: ``images/postgres`` for the luna-postgres repository,
  ``demo-app/`` (on tests/real/node_base.py's Node.js base, as
  tests/real/test_demo_image.py builds it) for the app repository, the two
  repositories being those of Pulumi.yaml's ``luna:postgresImage`` and
  ``luna:appImage``;
- **left out**: Grafana, Elasticsearch, Logstash and Kibana, which Debian does not
  package. They are listed in ``ImageReport.left_out`` and never faked.

``images/postgres`` runs ``apt-get update && apt-get install`` in a RUN step. The
private daemon runs with ``--iptables=false`` (it must not touch the host's
firewall, which other daemons share), so a container on its bridge has no route
out. The build therefore runs with ``--network host``: the RUN step shares the
host's network, which reaches the Debian mirror and nothing else, and the
Dockerfile and the apt sources it uses are unchanged.

Cache: ``$LUNA_REHEARSAL_CACHE``, else ``~/.cache/luna-rehearsal`` (outside the
clone): the minbase tar, the Node.js base, and one layer tar per stand-in keyed by
its recipe, plus the .debs apt downloaded, so apt fetches a package once. A warm
run loads the cached layers and rebuilds the two shipped images. Measured on the
2-core machine with a load average near 17: 6 min cold (debootstrap about 1.5 min,
the ten stand-in layers 3.7 min, the load 20 s, both builds beside them), 70-80 s
warm (the load 20-35 s, the two real builds 25-35 s each, side by side).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

from tests.real.docker_host import DockerHost
from tests.real.node_base import (
    base_rootfs,
    buildkit_client,
    docker_build,
    extract,
    import_base,
    in_chroot,
    minbase_rootfs,
    node_version,
    run,
    scratch,
)
from tests.rehearsal.layers import Layer, LoadImage, diff_layer, docker_load, image_id
from tests.rehearsal.stand_ins import LEFT_OUT, StandIn, stand_in_for
from tests.support.tools import REPO, need

__all__ = ["ImageReport", "ImageResult", "build_shipped", "default_cache", "ensure_images"]

POSTGRES_CONTEXT = REPO / "images" / "postgres"
APP_CONTEXT = REPO / "demo-app"
# Bump when the way a layer is made changes (the recipes key themselves).
_BUILD_STEPS = "1"


@dataclass(frozen=True)
class ImageResult:
    tag: str
    kind: str
    """``stand-in`` or ``built`` (a real docker build of this repository's Dockerfile)."""
    source: str
    """The Debian package and version, or the Dockerfile built."""
    upstream: str
    """What the image follows: the official image's Dockerfile, or the repo's own."""
    seconds: float
    """Seconds spent making it in this run: 0 for a stand-in layer taken from the cache."""
    package: str = ""
    """The stand-in's Debian package (empty for a built image)."""
    version: str = ""
    """Its Debian version: Debian's, not the pinned tag's."""


@dataclass
class ImageReport:
    images: list[ImageResult] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    load_seconds: float = 0.0
    """The one `docker load` of every stand-in (0 when the daemon had them all)."""

    def table(self) -> str:
        """The Markdown table the rehearsal's report includes."""
        rows = ["| image | kind | source | made in (s) |", "|---|---|---|---|"]
        rows += [f"| `{r.tag}` | {r.kind} | {r.source} | {r.seconds:.1f} |" for r in self.images]
        rows += [f"| `{tag}` | left out | no Debian program | - |" for tag in self.left_out]
        return "\n".join(rows)


def default_cache() -> Path:
    return Path(os.environ.get("LUNA_REHEARSAL_CACHE") or Path.home() / ".cache/luna-rehearsal")


def _repository(key: str) -> str:
    default = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"][key]["default"]
    return str(default).rsplit(":", 1)[0]


def _shipped_context(tag: str) -> Path | None:
    repository = tag.rsplit(":", 1)[0]
    contexts = {_repository("luna:postgresImage"): POSTGRES_CONTEXT,
                _repository("luna:appImage"): APP_CONTEXT}  # fmt: skip
    return contexts.get(repository)


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One builder at a time per cache (another rehearsal waits, then finds it built)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for chunk in iter(lambda: data.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _base_layer(minbase: Path) -> Layer:
    """The minbase tar is the base layer as it is; its digest is cached beside it."""
    sidecar = minbase.with_suffix(".sha256")
    if not sidecar.is_file():
        sidecar.write_text(_sha256(minbase))
    return Layer(minbase, sidecar.read_text().strip(), minbase.stat().st_size)


@dataclass(frozen=True)
class _Built:
    layer: Layer
    version: str
    seconds: float
    created: str


def _key(recipe: StandIn, minbase: Path) -> str:
    return hashlib.sha256(f"{minbase.name}\n{_BUILD_STEPS}\n{recipe!r}".encode()).hexdigest()[:16]


@contextlib.contextmanager
def _mounted(root: Path, cache: Path) -> Iterator[None]:
    """/dev and /proc for the maintainer scripts; apt's lists and .debs from the cache,
    shared by every stand-in (the minbase's docker-clean, which deletes .debs after
    each install, is set aside meanwhile and restored as it was)."""
    clean = root / "etc/apt/apt.conf.d/docker-clean"
    aside = root / "etc/apt/docker-clean.aside"
    clean.rename(aside)
    mounts = [
        (["--bind", "/dev"], root / "dev"),
        (["-t", "proc", "proc"], root / "proc"),
        (["--bind", str(cache / "apt" / "lists")], root / "var/lib/apt/lists"),
        (["--bind", str(cache / "apt" / "archives")], root / "var/cache/apt/archives"),
    ]
    done: list[Path] = []
    try:
        for args, target in mounts:
            target.mkdir(parents=True, exist_ok=True)
            run([need("mount"), *args, str(target)], f"mount {target}")
            done.append(target)
        yield
    finally:
        for target in reversed(done):
            subprocess.run([need("umount"), "-l", str(target)], capture_output=True, check=False)
        aside.rename(clean)


def _build_layer(recipe: StandIn, base: Path, cache: Path, out: Path, update: bool) -> _Built:
    """Install the recipe into a copy of the extracted minbase; its difference is the layer."""
    start = time.monotonic()
    root = base.parent / recipe.name
    run(["cp", "-a", str(base), str(root)], f"copy the minbase for {recipe.name}")
    try:
        with _mounted(root, cache):
            if update:
                in_chroot(root, "apt-get", "update", "-qq")
            in_chroot(root, "/bin/sh", "-euc", recipe.install)
            for path, (text, mode) in recipe.files.items():
                target = root / path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
                target.chmod(mode)
            if recipe.finish:
                in_chroot(root, "/bin/sh", "-euc", recipe.finish)
            version = in_chroot(root, "dpkg-query", "-W", "-f=${Version}", recipe.program)
        layer = diff_layer(base, root, out)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return _Built(layer, version.strip(), time.monotonic() - start,
                  datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))  # fmt: skip


def _layers(recipes: list[StandIn], minbase: Path, cache: Path) -> dict[str, _Built]:
    """Each recipe's layer: from the cache, or built now (apt's lists refreshed once)."""
    layers_dir = cache / "layers"
    layers_dir.mkdir(parents=True, exist_ok=True)
    found: dict[str, _Built] = {}
    missing: list[StandIn] = []
    for recipe in recipes:
        meta = layers_dir / f"{recipe.name}-{_key(recipe, minbase)}.json"
        if meta.is_file() and meta.with_suffix(".tar").is_file():
            data = json.loads(meta.read_text())
            layer = Layer(Path(data["tar"]), data["diff_id"], data["size"])
            found[recipe.name] = _Built(layer, data["version"], 0.0, data["created"])
        else:
            missing.append(recipe)
    if not missing:
        return found
    for folder in ("lists/partial", "archives/partial"):
        (cache / "apt" / folder).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="luna-stand-ins-", dir=scratch(cache)) as tmp:
        base = Path(tmp) / "minbase"
        extract(minbase, base)
        for i, recipe in enumerate(missing):
            key = _key(recipe, minbase)
            built = _build_layer(recipe, base, cache, layers_dir / f"{recipe.name}-{key}.tar",
                                 update=i == 0)  # fmt: skip
            (layers_dir / f"{recipe.name}-{key}.json").write_text(json.dumps({
                "tar": str(built.layer.tar), "diff_id": built.layer.diff_id,
                "size": built.layer.size, "version": built.version, "created": built.created,
            }))  # fmt: skip
            for old in layers_dir.iterdir():
                if re.fullmatch(rf"{re.escape(recipe.name)}-[0-9a-f]{{16}}\.(tar|json)", old.name) \
                        and key not in old.name:  # fmt: skip
                    old.unlink()  # an earlier recipe's (not redis-exporter's for redis)
            found[recipe.name] = built
    return found


def _present(host: DockerHost, tag: str) -> str:
    proc = host.docker("image", "inspect", "--format", "{{.Id}}", tag, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def build_shipped(host: DockerHost, context: Path, tag: str, *, cache: Path | None = None) -> float:
    """A real `docker build` of one of this repository's Dockerfiles; its seconds.

    ``demo-app/`` gets its Node.js base first (tests/real/node_base.py), and builds
    on the daemon's bridge as test_demo_image.py does; ``images/postgres`` builds
    with the host's network (module docstring), on the postgres stand-in, which
    must be loaded already.
    """
    return _build(host.env, context, tag, cache or default_cache())


def _build(env: dict[str, str], context: Path, tag: str, cache: Path) -> float:
    start = time.monotonic()
    network = None
    if context == APP_CONTEXT:
        base = base_rootfs(node_version(context / "Dockerfile"), cache)
        import_base([buildkit_client()], env, base)
    else:
        network = "host"
    proc = docker_build(env, context, tag, network=network)
    assert proc.returncode == 0, f"docker build {context.name} as {tag} failed:\n{proc.stderr}"
    return time.monotonic() - start


# The child's entry point: scripts/rehearse's own interpreter, importing from the clone.
_APART = "import sys; from tests.rehearsal.images import build_apart_main; build_apart_main()"


@contextlib.contextmanager
def _building_apart(
    host: DockerHost, context: Path, tag: str, cache: Path
) -> Iterator[subprocess.Popen[str]]:
    """``build_shipped`` in a child process in a session of its own, beside the caller.

    Not a thread: an interrupt (SIGINT, or SIGTERM turned into KeyboardInterrupt
    by scripts/rehearse) reaches only the main thread, and a thread building the
    app would hold the exit for as long as its debootstrap and ``docker build``
    take (minutes, cold). The child's whole process group is stopped instead:
    SIGTERM, which the child turns into KeyboardInterrupt so ``subprocess.run``
    kills what it started and its temporary folders go; SIGKILL after 20 s.
    """
    # The daemon's environment is the child's own (DOCKER_HOST and the rest).
    proc = subprocess.Popen([sys.executable, "-c", _APART, str(context), tag, str(cache)],
                            cwd=REPO, env=host.env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        yield proc
    except BaseException:
        _stop_group(proc)
        raise


def _stop_group(proc: subprocess.Popen[str]) -> None:
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)  # its session's group: the build's programs too
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=grace)
            break
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # an orphan of the group, if any is left


def _built_apart(proc: subprocess.Popen[str]) -> float:
    """The seconds the child's build took; its failure as this process's AssertionError."""
    out, err = proc.communicate()
    assert proc.returncode == 0, err.strip() or f"the app's build exited {proc.returncode}"
    return float(out.split()[-1])


def build_apart_main() -> None:
    """The child of :func:`_building_apart`: one build, its seconds on stdout."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    context, tag, cache = sys.argv[1:4]
    try:
        seconds = _build(dict(os.environ), Path(context), tag, Path(cache))
    except KeyboardInterrupt:
        sys.exit(130)
    except (AssertionError, OSError, subprocess.SubprocessError) as error:
        print(str(error), file=sys.stderr)
        sys.exit(1)
    print(f"{seconds:.3f}")


def _stand_in_images(host: DockerHost, wanted: list[tuple[str, StandIn]], cache: Path,
                     report: ImageReport) -> None:  # fmt: skip
    with _locked(cache):
        minbase = minbase_rootfs(cache)
        base = _base_layer(minbase)
        recipes = {recipe.name: recipe for _, recipe in wanted}
        built = _layers(list(recipes.values()), minbase, cache)
    to_load = []
    for tag, recipe in wanted:
        made = built[recipe.name]
        image = LoadImage(
            tag=tag, config=recipe.image_config(made.version), layers=(base, made.layer),
            history=("debootstrap --variant=minbase bookworm (luna rehearsal minbase)",
                     f"apt-get install {recipe.program} (luna rehearsal stand-in of {tag})"),
            created=made.created,
        )  # fmt: skip
        if _present(host, tag) != image_id(image):
            to_load.append(image)
        source = f"Debian {recipe.program} {made.version}"
        report.images.append(ImageResult(tag, "stand-in", source, recipe.upstream, made.seconds,
                                         recipe.program, made.version))  # fmt: skip
    start = time.monotonic()
    if to_load:
        docker_load([buildkit_client()], host.env, to_load)
    report.load_seconds = time.monotonic() - start if to_load else 0.0


def ensure_images(
    host: DockerHost, tags: Iterable[str], *, cache: Path | None = None
) -> ImageReport:
    """Make every tag available in ``host``'s daemon (module docstring); a tag that is
    neither a stand-in, a shipped image nor left out raises ValueError naming it."""
    cache = cache or default_cache()
    report = ImageReport()
    stand_ins: list[tuple[str, StandIn]] = []
    shipped: list[tuple[str, Path]] = []
    for tag in dict.fromkeys(tags):
        recipe, context = stand_in_for(tag), _shipped_context(tag)
        if recipe:
            stand_ins.append((tag, recipe))
        elif context:
            shipped.append((tag, context))
        elif LEFT_OUT.match(tag):
            report.left_out.append(tag)
        else:
            raise ValueError(f"image {tag}: no stand-in recipe, Dockerfile or left-out rule")
    postgres_base = re.compile(r"^FROM (\S+)$", re.M).search(
        (POSTGRES_CONTEXT / "Dockerfile").read_text()
    )
    if any(context == POSTGRES_CONTEXT for _, context in shipped):
        assert postgres_base, "images/postgres/Dockerfile has no FROM line"
        base_tag = postgres_base.group(1)
        recipe = stand_in_for(base_tag)
        assert recipe, f"images/postgres builds FROM {base_tag}, which has no stand-in"
        if all(tag != base_tag for tag, _ in stand_ins):
            stand_ins.append((base_tag, recipe))
    with _locked(cache):
        minbase_rootfs(cache)  # made once, before the app's Node.js base asks for it too
    # The app's build needs no stand-in: it runs beside the stand-ins' load.
    with contextlib.ExitStack() as apart:
        apps = {tag: apart.enter_context(_building_apart(host, context, tag, cache))
                for tag, context in shipped if context == APP_CONTEXT}  # fmt: skip
        _stand_in_images(host, stand_ins, cache, report)
        seconds = {
            tag: _built_apart(apps[tag])
            if tag in apps
            else build_shipped(host, context, tag, cache=cache)
            for tag, context in shipped
        }
    for tag, context in shipped:
        dockerfile = context.relative_to(REPO) / "Dockerfile"
        report.images.append(ImageResult(tag, "built", f"docker build {dockerfile}",
                                         str(dockerfile), seconds[tag]))  # fmt: skip
    return report
