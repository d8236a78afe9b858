"""The rehearsal's applier: a render's resources, created on a real Docker daemon
as the Docker provider creates them, in the order the engine model plans.

The Pulumi engine cannot run here (../shared/FACTS.md), so its steps come from
:func:`tests.engine.model.plan` and each step is carried out with the Docker CLI
the way kreuzwerker/terraform-provider-docker v4.5.0 (bridged by pulumi-docker
5.x) carries it out through the API, internal/provider/:

- ``resourceDockerNetworkCreate`` (resource_docker_network_funcs.go): one
  ``NetworkCreate`` with driver, ``internal`` and labels; delete is
  ``NetworkRemove``.
- ``resourceDockerVolumeCreate`` (resource_docker_volume.go): ``VolumeCreate``
  with name and labels; delete ``VolumeRemove``.
- ``resourceDockerContainerCreate`` (resource_docker_container_funcs.go):
  ``ContainerCreate`` with the config and host config (env, user, labels,
  healthcheck, mounts, tmpfs, capabilities, security options, read-only root,
  restart policy, memory/swap, cpus, init, log driver and options, port
  bindings), then ``NetworkConnect`` for each ``networks_advanced`` entry with its
  aliases, then one ``CopyToContainer`` per ``upload`` (a tar of the file at
  mode 0644, into ``/``) *before* ``ContainerStart``; then, with ``wait``, it
  polls the container's health until ``healthy`` or ``wait_timeout``, and
  ``resourceDockerContainerRead`` requires it running when ``must_run``.
- ``resourceDockerContainerUpdate``: one ``ContainerUpdate`` (restart policy,
  memory, swap, cpu shares and set); every other change is a replacement.
- ``resourceDockerContainerDelete``: ``ContainerStop`` with
  ``destroy_grace_seconds``, then a forced ``ContainerRemove``.
- pulumi-command's ``local.Command`` (provider/pkg/provider/local): the
  ``create`` script run by the ``interpreter`` on the machine running the
  engine, with ``environment``; a non-zero exit fails the resource.

Rehearsal substitutions, each reported in :attr:`Applied.notes`:
- ports published on ``0.0.0.0`` are published on ``127.0.0.1`` (nothing here may
  serve beyond loopback);
- resources of the services with no Debian program (Grafana, Elasticsearch,
  Logstash, Kibana) are skipped, and so is anything that needs them;
- the GELF log driver needs Logstash, which is left out: such containers log
  with ``json-file`` instead;
- a job's ``DOCKER_HOST`` is the private daemon's socket.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from tests.engine.execute import next_state
from tests.engine.model import Plan, Resource, State, plan
from tests.real.docker_host import DockerHost
from tests.rehearsal.engine_api import EngineApi, create_body
from tests.rehearsal.schedule import closure, ready

__all__ = ["LEFT_OUT", "Applied", "Applier", "StepError", "left_out_reason", "tag_of"]

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
BUILD = "docker:index/image:Image"
COMMAND = "command:local:Command"
LEFT_OUT = frozenset({"grafana", "elasticsearch", "es", "logstash", "kibana"})
"""Services whose program Debian does not ship (no stand-in image): their resources
are skipped. Matched against the words of the resource's name (``luna-logging-es-data``)."""


class StepError(Exception):
    """A step the provider would fail (the engine then stops: cancelDueToError).

    ``partial``: the thing was made and runs, but never became ready (a container
    that never turned healthy): the engine records it with init errors."""

    def __init__(self, message: str, *, partial: bool = False) -> None:
        super().__init__(message)
        self.partial = partial


@dataclass
class Applied:
    """What exists on the daemon: the provider's state, by URN."""

    ids: dict[str, str] = field(default_factory=dict)
    """Container, network and volume IDs (a job's: its exit status)."""
    names: dict[str, str] = field(default_factory=dict)
    """URN -> physical name."""
    resources: dict[str, Resource] = field(default_factory=dict)
    """The inputs each resource was last applied with (the engine's state)."""
    skipped: dict[str, str] = field(default_factory=dict)
    substituted: dict[str, frozenset[str]] = field(default_factory=dict)
    """Inputs the rehearsal replaced (GELF logging), by URN."""
    notes: list[str] = field(default_factory=list)
    steps: list[tuple[str, str, float]] = field(default_factory=list)
    """``(op, name, seconds)`` of every step executed, in order."""

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def container(self, service: str) -> str:
        """The physical name of ``service``'s (first) container."""
        for urn, r in self.resources.items():
            if r.type == CONTAINER and _labels(r).get("com.luna.service") == service:
                return self.names[urn]
        raise KeyError(f"no container of service {service!r} was applied")

    def containers(self) -> dict[str, str]:
        """Physical container name -> service."""
        return {
            self.names[u]: _labels(r).get("com.luna.service", "?")
            for u, r in self.resources.items()
            if r.type == CONTAINER
        }


def _labels(r: Resource) -> dict[str, str]:
    return {x["label"]: x["value"] for x in r.inputs.get("labels") or []}


def left_out_reason(r: Resource, left_out_images: Iterable[str]) -> str | None:
    """Why ``r`` is skipped, or None: it belongs to a left-out service or image."""
    image_refs = set(left_out_images)
    if r.type == REMOTE_IMAGE and r.inputs.get("name") in image_refs:
        return f"image {r.inputs.get('name')} has no Debian stand-in"
    if LEFT_OUT & set(r.name.lower().split("-")):
        return "its service has no Debian stand-in (Grafana, Elasticsearch, Logstash, Kibana)"
    return None


class Applier:
    """Carries out a plan's steps on ``host``; keeps the resulting state in :attr:`state`."""

    def __init__(
        self,
        host: DockerHost,
        *,
        left_out_images: Iterable[str] = (),
        health_timeout: int = 300,
        loopback: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.loopback = loopback
        """Where ports the program publishes on a wildcard are published instead."""
        self.left_out_images = tuple(left_out_images)
        self.health_timeout = health_timeout
        self.state = Applied()
        self.model = State({})
        """The engine's state (tests/engine): what the next plan starts from."""
        self.api = EngineApi(host.socket)
        self._image_refs: dict[str, str] = {}
        self._old: dict[str, tuple[str, Resource]] = {}
        """The copy this update's create-before-delete replacement displaced, by URN."""
        self._pending: dict[str, list[tuple[str, Resource]]] = {}
        """Old copies earlier updates left for deletion (the model's ``pending``)."""
        self._stopping = threading.Event()
        """Set when the caller is interrupted: the running steps stop waiting."""

    # -- plans -------------------------------------------------------------
    def preview(self, program: Mapping[str, Resource]) -> Plan:
        """``pulumi preview``: the steps ``up`` would take from the current state, none run."""
        return plan(self.model, self._keep(program))

    def up(
        self,
        program: Mapping[str, Resource],
        *,
        failing: Iterable[str] = (),
        interrupt_after: int | None = None,
    ) -> Plan:
        """``pulumi up`` of ``program`` from the current state, executed in the engine's order.

        ``interrupt_after``: the update is killed once that many steps ran (the
        engine model's interrupt, a SIGINT or a killed runner): StepError.
        """
        program = self._keep(program)
        for r in program.values():
            if r.type == REMOTE_IMAGE:
                self._image_refs[str(r.outputs.get("imageId"))] = str(r.inputs["name"])
        result = plan(self.model, program, failing=failing, interrupt_after=interrupt_after)
        if result.errors:
            raise StepError("; ".join(result.errors))
        ran, error = self._execute(result, program)
        if error is not None:
            # What the engine records for the steps that really ran, the failed ones
            # included (a partial create when the container runs but never became
            # healthy): the model's own rule (tests/engine/execute.py next_state).
            self._record(dataclasses.replace(result, events=ran, failed=error[1]), program)
            raise error[0]
        self._record(result, program)
        return result

    def _execute(
        self, result: Plan, program: Mapping[str, Resource]
    ) -> tuple[list[tuple[str, str]], tuple[StepError, str] | None]:
        """Run the plan's events, each as soon as the steps it waits for are done
        (tests/rehearsal/schedule.py); after a failure start nothing new and let the
        running ones finish. The events that ran, and the first failure with its URN."""
        events, needs = result.events, closure(program)
        ran: list[tuple[str, str]] = []
        done: set[int] = set()
        started: set[int] = set()
        begun: dict[int, float] = {}
        error: tuple[StepError, str] | None = None
        other: BaseException | None = None
        self._stopping.clear()
        with ThreadPoolExecutor(max_workers=16, thread_name_prefix="step") as pool:
            running: dict[Future[float], int] = {}
            while True:
                if error is None and other is None:
                    for i in ready(events, needs, done, started):
                        started.add(i)
                        begun[i] = time.monotonic()
                        running[pool.submit(self._step, *events[i], result, program)] = i
                if not running:
                    break
                try:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                except BaseException:
                    # An interrupt reaches this thread only: the steps' health waits
                    # and commands end at once, so leaving the pool takes no minutes.
                    self._stopping.set()
                    raise
                for future in finished:
                    i = running.pop(future)
                    event, urn = events[i]
                    try:
                        seconds = future.result()
                    except StepError as failure:
                        kind = "interrupt" if event == "interrupt" else "fail"
                        kind = "partial" if failure.partial else kind
                        ran.append((kind, urn))
                        self.state.steps.append((kind, urn.split("::")[-1],
                                                 time.monotonic() - begun[i]))  # fmt: skip
                        error = error or (failure, urn)
                        continue
                    except Exception as unexpected:  # raised once the running ones end
                        other = other or unexpected
                        continue
                    done.add(i)
                    ran.append((event, urn))
                    self.state.steps.append((event, urn.split("::")[-1], seconds))
        if other is not None:
            raise other
        return ran, error

    def _step(self, event: str, urn: str, result: Plan, program: Mapping[str, Resource]) -> float:
        start = time.monotonic()
        if event in ("fail", "interrupt"):
            raise StepError(f"{urn}: {'failed' if event == 'fail' else event} (requested)")
        self._event(event, urn, result, program)
        return time.monotonic() - start

    def _event(self, event: str, urn: str, result: Plan, program: Mapping[str, Resource]) -> None:
        step = result.steps.get(urn)
        if event == "delete-pending":
            copies = self._pending.get(urn)
            if copies:  # a RandomId or a job's old copy has nothing on the daemon
                self._remove(*copies.pop(0))
        elif event == "delete":
            if urn in self._old:  # the copy this update's replacement displaced
                self._remove(*self._old.pop(urn))
            else:
                self._delete(urn)
        elif event == "update":
            self._update(urn, program[urn])
        else:
            self._create(urn, program[urn], replacing=step is not None and step.op == "replace")

    def _record(self, result: Plan, program: Mapping[str, Resource]) -> None:
        """The engine's next state; displaced copies not deleted become pending."""
        self.model = next_state(result, self.model, program)
        for urn, copy in self._old.items():
            self._pending.setdefault(urn, []).append(copy)
        self._old.clear()
        self.state.resources = dict(self.model.resources)

    def _keep(self, program: Mapping[str, Resource]) -> dict[str, Resource]:
        kept: dict[str, Resource] = {}
        for urn, r in program.items():
            reason = left_out_reason(r, self.left_out_images)
            if reason is None and any(d in self.state.skipped for d in r.dependencies):
                reason = "it depends on a skipped resource"
            if reason is None and r.type == CONTAINER and r.inputs.get("logDriver") == "gelf":
                self.state.note(
                    f"{r.inputs.get('name')}: GELF logging needs Logstash (left out); "
                    "json-file instead"
                )
            if reason:
                self.state.skipped[urn] = reason
            else:
                kept[urn] = r
        return kept

    # -- steps -------------------------------------------------------------
    def _create(self, urn: str, r: Resource, *, replacing: bool) -> None:
        if replacing and urn in self.state.ids and urn not in self._old:
            # Create-before-delete: the old copy stays until the delete at the end.
            self._old[urn] = (self.state.ids.pop(urn), self.state.resources[urn])
        if r.type == NETWORK:
            self._network(urn, r)
        elif r.type == VOLUME:
            name = str(r.inputs["name"])
            args = ["volume", "create", *_label_args(r.inputs.get("labels")), name]
            self.state.ids[urn] = self.host.docker(*args).stdout.strip()
            self.state.names[urn] = name
        elif r.type == CONTAINER:
            self._container(urn, r)
        elif r.type == COMMAND:
            self._command(urn, r)
        elif r.type == REMOTE_IMAGE:
            ref = tag_of(str(r.inputs["name"]))
            if ref != r.inputs["name"]:
                self.state.note(f"{r.inputs['name']}: no registry gives its digest here; the "
                                f"image made under {ref} stands in")  # fmt: skip
            # The provider pulls (resourceDockerImageCreate); no registry here, so the
            # image must have been imported or built into the daemon beforehand.
            found = self.host.docker("image", "inspect", "-f", "{{.Id}}", ref, check=False)
            if found.returncode != 0:
                raise StepError(f"image {ref} is not on the daemon (no registry to pull from)")
            self.state.ids[urn] = found.stdout.strip()
        elif r.type == BUILD:
            ctx = str((r.inputs.get("build") or {}).get("context"))
            self.host.docker("build", "-q", "-t", str(r.inputs["imageName"]), ctx)
        elif r.type.startswith("docker:"):
            raise StepError(f"{r.name}: the applier does not carry out {r.type}")
        self.state.resources[urn] = r

    def _network(self, urn: str, r: Resource) -> None:
        name = str(r.inputs["name"])
        args = ["network", "create", "--driver", str(r.inputs.get("driver") or "bridge")]
        if r.inputs.get("internal"):
            args.append("--internal")
        args += _label_args(r.inputs.get("labels"))
        self.state.ids[urn] = self.host.docker(*args, name).stdout.strip()
        self.state.names[urn] = name

    def _container(self, urn: str, r: Resource) -> None:
        i = dict(r.inputs)
        name = str(i["name"])
        if i.get("logDriver") == "gelf":
            i["logDriver"], i["logOpts"] = "json-file", {"max-size": "10m", "max-file": "3"}
            self.state.substituted[urn] = frozenset({"logDriver", "logOpts"})
        image = tag_of(self._image_refs.get(str(i["image"]), str(i["image"])))
        body = create_body(i, image, publish_ip=lambda ip: self._publish_ip(name, ip))
        try:
            cid = self.api.create(name, body)
            self.state.ids[urn], self.state.names[urn] = cid, name
            # Created on the default network; the provider leaves it for networks_advanced.
            self.api.disconnect("bridge", cid)
            for net in i.get("networksAdvanced") or []:
                self.api.connect(str(net["name"]), cid, [str(a) for a in net.get("aliases") or []])
            for upload in i.get("uploads") or []:
                self.api.copy_to(cid, _tar(upload))
            self.api.start(cid)
        except RuntimeError as error:
            raise StepError(f"{name}: {error}") from None
        self.state.resources[urn] = r
        if i.get("wait"):
            self._wait_healthy(name, int(i.get("waitTimeout") or 60))
        elif i.get("mustRun"):
            time.sleep(0.5)
            if self._inspect(cid, "{{.State.Running}}") != "true":
                raise StepError(f"{name}: container failed to be in running state", partial=True)

    def _publish_ip(self, name: str, ip: str) -> str:
        if ip in ("0.0.0.0", "::"):  # noqa: S104 - rewritten, never bound
            self.state.note(f"{name}: ports published on {self.loopback}, not {ip}")
            return self.loopback
        return ip

    def _inspect(self, ref: str, fmt: str) -> str:
        return self.host.docker("inspect", "-f", fmt, ref, check=False).stdout.strip()

    def _wait_healthy(self, name: str, timeout: int) -> None:
        """v4.5.0 ``wait``: poll health until healthy; a timeout fails the create, and
        the container stays (the engine records a partial create)."""
        deadline = time.monotonic() + min(timeout, self.health_timeout)
        status = ""
        while time.monotonic() < deadline:
            if self._stopping.is_set():
                raise StepError(f"{name}: interrupted while waiting for health", partial=True)
            status = self._inspect(name, "{{.State.Health.Status}} {{.State.Status}}")
            if status.startswith("healthy"):
                return
            if "exited" in status or "dead" in status:
                break
            time.sleep(0.5)
        logs = self.host.docker("logs", "--tail", "15", name, check=False)
        tail = (logs.stdout + logs.stderr)[-1500:]
        raise StepError(
            f"{name}: not healthy ({status or 'gone'}) after {timeout}s:\n{tail}", partial=True
        )

    def _command(self, urn: str, r: Resource) -> None:
        env = {k: str(v) for k, v in (r.inputs.get("environment") or {}).items()}
        if "DOCKER_HOST" in env:
            env["DOCKER_HOST"] = self.host.env["DOCKER_HOST"]
            self.state.note(f"{r.name}: DOCKER_HOST is the rehearsal daemon's socket")
        interpreter = [str(x) for x in r.inputs.get("interpreter") or ["/bin/sh", "-c"]]
        proc = self._run([*interpreter, str(r.inputs.get("create") or "true")],
                         {**self.host.env, **env})  # fmt: skip
        self.state.ids[urn] = str(proc.returncode)
        if proc.returncode != 0:
            raise StepError(
                f"{r.name}: exit status {proc.returncode}\n{(proc.stdout + proc.stderr)[-1500:]}"
            )

    def _run(self, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """A local command, as the Command provider runs it (30 minutes at most), that
        an interrupt stops."""
        with subprocess.Popen(argv, env=env, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) as proc:  # fmt: skip
            deadline = time.monotonic() + 1800
            while True:
                try:
                    out, err = proc.communicate(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if self._stopping.is_set() or time.monotonic() > deadline:
                        proc.kill()
                        out, err = proc.communicate()
                        err += "\n(stopped: interrupted or past 30 minutes)"
                        break
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def _update(self, urn: str, r: Resource) -> None:
        if r.type == CONTAINER:
            i = r.inputs
            args = ["update", "--restart", str(i.get("restart") or "no")]
            if i.get("memory"):
                args += ["--memory", f"{i['memory']}m"]
            if i.get("memorySwap"):
                args += ["--memory-swap", f"{i['memorySwap']}m"]
            self.host.docker(*args, self.state.ids[urn])
        elif r.type == COMMAND:
            self._command(urn, r)
        self.state.resources[urn] = r

    def _delete(self, urn: str) -> None:
        """The current copy: a resource removed, or replaced delete-before-create."""
        ref = self.state.ids.pop(urn, None)
        r = self.state.resources.pop(urn, None) or self.model.resources.get(urn)
        self.state.names.pop(urn, None)
        if ref is not None and r is not None:
            self._remove(ref, r)

    def _remove(self, ref: str, r: Resource) -> None:
        if r.type == CONTAINER:
            grace = str(r.inputs.get("destroyGraceSeconds") or 0)
            self.host.docker("stop", "-t", grace, ref, check=False)
            self.host.docker("rm", "-f", ref)
        elif r.type == NETWORK:
            self.host.docker("network", "rm", ref)
        elif r.type == VOLUME:
            self.host.docker("volume", "rm", ref)

    def describe(self) -> str:
        return "\n".join(f"{op:7} {name} ({secs:.1f}s)" for op, name, secs in self.state.steps)


def tag_of(ref: str) -> str:
    """``name:tag`` of ``name:tag@sha256:…`` (a digest-pinned reference)."""
    return ref.split("@", 1)[0]


def _label_args(labels: Any, *, flag: str = "--label") -> list[str]:
    return [f"{flag}={x['label']}={x['value']}" for x in labels or []]


def _tar(upload: Mapping[str, Any]) -> bytes:
    """resourceDockerContainerCreate's upload tar: one file, mode 0644 (0744 if executable)."""
    content = str(upload.get("content") or "").encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        info = tarfile.TarInfo(str(upload["file"]).lstrip("/"))
        info.size, info.mode = len(content), 0o744 if upload.get("executable") else 0o644
        archive.addfile(info, io.BytesIO(content))
    return buf.getvalue()
