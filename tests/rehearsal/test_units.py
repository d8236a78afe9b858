"""The rehearsal's pure parts: the ContainerCreate body, the command's arguments and
report, the certificates its mocks issue. No daemon."""

from __future__ import annotations

import datetime
import os
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.engine.model import State, plan
from tests.real.docker_host import DockerHost
from tests.rehearsal.applier import Applier, StepError
from tests.rehearsal.cli import main, report
from tests.rehearsal.engine_api import create_body, go_nanoseconds
from tests.rehearsal.outcome import Outcome
from tests.rehearsal.pki import RehearsalMocks, issue_pair

ANY = "0.0.0.0"  # noqa: S104 - a binding the rehearsal rewrites, never binds


def test_create_body_matches_the_provider() -> None:
    """Durations and cpus as the provider converts them; a wildcard binding rewritten."""
    assert go_nanoseconds("1m30s") == 90 * 10**9
    body = create_body(
        {"cpus": "0.5", "memory": 64, "memorySwap": 64,
         "ports": [{"internal": 8443, "external": 443, "ip": ANY, "protocol": "tcp"}],
         "healthcheck": {"tests": ["CMD", "true"], "interval": "30s"}},
        "img", publish_ip=lambda ip: "127.0.0.1" if ip == ANY else ip,
    )  # fmt: skip
    host = body["HostConfig"]
    assert host["NanoCpus"] == 500_000_000 and host["MemorySwap"] == 64 * 2**20
    assert host["PortBindings"] == {"8443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "443"}]}
    assert body["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 30 * 10**9}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stack", "dev"], "argument --stack: invalid choice: 'dev'"),
        (["--scenario", "up,nope"], "unknown scenario nope; allowed: up,"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_report_is_a_table_with_the_failures_evidence() -> None:
    outcomes = [Outcome("up", True, "12 healthy in 80 s", "smoke ok", 81.4),
                Outcome("phi", False, "3 lines", "proxy: 'x' in ...", 12.6)]  # fmt: skip
    text = report("staging", outcomes, 95, ready=40.2)
    assert "| up | 12 healthy in 80 s | 81 | pass |" in text
    assert "| phi | 3 lines | 13 | FAIL |" in text and "proxy: 'x' in ..." in text
    assert "images ready in 40 s" in text
    assert "1 of 2 checks failed" in text


def test_edge_pair_is_issued_for_the_host() -> None:
    ca_pem, cert_pem, key_pem = issue_pair("staging.luna-app.com")
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["staging.luna-app.com"]
    assert cert.issuer == ca.subject and "PRIVATE KEY" in key_pem
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert cert.not_valid_after_utc > datetime.datetime.now(datetime.UTC)
    cert.verify_directly_issued_by(ca)


def test_the_runbooks_blocks_are_found() -> None:
    """The PITR block of backup-restore.md, outside code-fence comments that look like headings."""
    from tests.rehearsal.scenarios.runbooks import RUNBOOKS, docker_blocks

    text = (RUNBOOKS / "backup-restore.md").read_text()
    blocks = docker_blocks(text, "Point-in-time recovery on a Docker host")
    assert blocks and "pgbackrest" in blocks[0] and "restore" in blocks[0], blocks
    assert docker_blocks("# A\n```sh\n# 1. not a heading\necho x\n```\n", "A") == [
        "# 1. not a heading\necho x\n"
    ]


def test_random_ids_are_kept_while_their_keepers_are_and_never_drawn_back() -> None:
    """A rollback to earlier inputs gets a new container name, as the real engine gives
    it; the old name may still be taken by a container waiting for deletion."""
    mocks = RehearsalMocks(random_ids={})

    def draw(keepers: str) -> str:
        return mocks._random_hex("app-0-generation", {"byteLength": 4, "keepers": {"i": keepers}})

    first = draw("v1")
    assert draw("v1") == first, "unchanged keepers must keep the value (no replacement)"
    second = draw("v2")
    assert second != first
    assert draw("v1") not in (first, second), "a replacement drew an earlier value back"


def test_a_page_counts_only_for_an_alert_that_began_after_the_fault() -> None:
    """The alerts scenario's crisis page: a notification repeating an alert that was
    already active (the rollback phase's) is not a page for the fault injected at t0,
    nor is a warning or a resolved notification (CI at 1a82623 passed on a stale one),
    nor a budget-burn alert, whose windows hold the stack's start (one fired 21 s into
    a fault, pending since the start)."""
    import json
    import time
    from types import SimpleNamespace

    from tests.rehearsal.scenarios.alerts import DOWN, PAGE, _pages
    from tests.rehearsal.world import Receiver

    receiver = Receiver()
    t0 = time.monotonic()
    before, after = (time.time() - 60, time.time() + 5)

    def alert(name: str, severity: str, began: float, status: str = "firing") -> dict[str, object]:
        stamp = datetime.datetime.fromtimestamp(began, datetime.UTC).isoformat()
        return {"status": status, "startsAt": stamp.replace("+00:00", "Z"),
                "labels": {"alertname": name, "severity": severity}}  # fmt: skip

    def post(path: str, *alerts: dict[str, object]) -> None:
        receiver.posts.append((time.monotonic() - receiver.start, path,
                               json.dumps({"alerts": list(alerts)})))  # fmt: skip

    r = SimpleNamespace(world=SimpleNamespace(receiver=receiver))
    post("/pager", alert("LunaCrisisEndpointDown", "critical", before))
    post("/pager", alert("LunaCrisisLatencyHigh", "warning", after))
    post("/pager", alert("LunaAppDown", "critical", after, status="resolved"))
    post("/chat", alert("LunaAppDown", "critical", after))
    post("/pager", alert("LunaCrisisAvailabilityBudgetBurn", "critical", after))
    assert _pages(r, t0, DOWN, severities=PAGE) == []  # type: ignore[arg-type]
    post("/pager", alert("LunaCrisisEndpointDown", "critical", after))
    assert [name for _, name in _pages(r, t0, DOWN, severities=PAGE)] == [  # type: ignore[arg-type]
        "LunaCrisisEndpointDown"
    ]


def test_pgbackrest_runs_are_timed_from_the_daemons_stamps() -> None:
    """The alerts scenario's push-failure figure: begin and end lines of one command,
    paired in time order across stdout and stderr; a run with no end is still running."""
    from tests.rehearsal.scenarios.backup_loop import command_runs, size_bytes

    stdout = (
        "2026-12-07T05:00:00.100000000Z 2026-12-07 05:00:00.099 P00   INFO: archive-push "
        "command begin 2.45: [pg_wal/00000001000000000000000A]\n"
        "2026-12-07T05:00:07.350000000Z 2026-12-07 05:00:07.349 P00   INFO: archive-push "
        "command end: aborted with exception [049]\n"
        "2026-12-07T05:01:00Z 2026-12-07 05:01:00.000 P00   INFO: backup command begin 2.45\n"
        "2026-12-07T05:01:08.5Z 2026-12-07 05:01:08.500 P00   INFO: archive-push command "
        "begin 2.45: [pg_wal/00000001000000000000000A]\n"
    )
    stderr = "2026-12-07T05:00:07.340Z ERROR: [049]: unable to get address for 'x'\n"
    runs = command_runs(stdout + stderr, "archive-push")
    assert [(round(e - b, 2) if e else None, how) for b, e, how in runs] == [
        (7.25, "aborted with exception [049]"),
        (None, "still running"),
    ]
    assert command_runs(stdout, "restore") == []
    assert size_bytes("130.4MB") == round(130.4 * 2**20)
    assert size_bytes("1GB") == 2**30
    assert size_bytes("12 apples") is None


def test_the_cache_watch_reports_overlap_and_gap() -> None:
    """The rotations scenario's cache figures: the most containers answering at once in
    a window, and the longest time from the last sample with a cache to the next one
    after samples with none (a replaced cache's gap)."""
    from types import SimpleNamespace

    from tests.rehearsal.scenarios.watch import CacheWatch

    w = CacheWatch(SimpleNamespace())  # type: ignore[arg-type]
    w.samples = [(0.0, 1), (0.2, 1), (0.4, 0), (0.6, 0), (1.4, 1), (1.6, 2), (1.8, 1)]
    assert w.between(0.0, 1.5) == (1, 1.2, 5)
    assert w.between(0.0, 2.0)[0] == 2
    assert w.between(1.4, 2.0) == (2, 0.0, 3), "no sample without a cache: no gap"


def test_an_interrupted_up_keeps_what_ran_and_the_next_up_finishes() -> None:
    """The applier's interrupt (the rotations scenario kills an ``up`` halfway): the
    steps before it are in the engine's state, the next ``up`` runs only the rest,
    and one more plans nothing. Random resources touch no daemon."""
    from types import SimpleNamespace

    from tests.engine.model import Resource
    from tests.rehearsal.applier import Applier, StepError

    def random(name: str, *deps: str) -> Resource:
        return Resource(f"urn:pulumi:s::p::random:index/randomId:RandomId::{name}",
                        "random:index/randomId:RandomId", name, {"byteLength": 4}, False,
                        False, deps, {})  # fmt: skip

    a = random("a")
    b = random("b", a.urn)
    program = {a.urn: a, b.urn: b}
    applier = Applier(SimpleNamespace(socket="/nonexistent"))  # type: ignore[arg-type]
    assert len(applier.preview(program).events) == 2
    try:
        applier.up(program, interrupt_after=1)
        raise AssertionError("the up was not interrupted")
    except StepError as error:
        assert "interrupt" in str(error)
    assert set(applier.model.resources) == {a.urn}
    assert applier.up(program).events == [("create", b.urn)]
    assert applier.up(program).events == []


def test_a_renewed_edge_pair_comes_from_the_same_issuer() -> None:
    """The rotations scenario renews the edge's pair: a new key and certificate that
    clients (and the blackbox exporter's probe) still verify with the stack's CA."""
    from tests.rehearsal.pki import edge_issuer

    issuer = edge_issuer()
    first, renewed = (
        issue_pair("staging.luna-app.com", issuer=issuer),
        issue_pair("staging.luna-app.com", issuer=issuer),
    )
    ca = x509.load_pem_x509_certificate(issuer[0].encode())
    assert first[0] == renewed[0] == issuer[0]
    assert first[1] != renewed[1] and first[2] != renewed[2]
    x509.load_pem_x509_certificate(renewed[1].encode()).verify_directly_issued_by(ca)


def test_the_engines_parallel_steps_create_both_replicas_at_once() -> None:
    """An app image bump on staging as the engine runs it (tests/rehearsal/schedule.py):
    both replicas start together once the migration is done; nothing that depends on
    them (the admission gate) starts before both are; every delete waits for the rest."""
    from tests.engine.scenarios import APP_IMAGE_NEXT, snap
    from tests.rehearsal.schedule import closure, ready

    before = snap("staging", "docker")
    after = snap("staging", "docker", config=(("appImage", APP_IMAGE_NEXT),))
    events = plan(State(before), after).events
    needs = closure(after)
    done: set[int] = set()
    waves: list[list[str]] = []
    while len(done) < len(events):
        wave = ready(events, needs, done, done)
        assert wave, f"no step can start; done {len(done)} of {len(events)}: {events}"
        waves.append([f"{events[i][0]} {events[i][1].split('::')[-1]}" for i in wave])
        done.update(wave)
    both = {"create luna-app-web-0", "create luna-app-web-1"}
    replicas = [w for w in waves if both & set(w)]
    assert len(replicas) == 1 and both <= set(replicas[0]), waves
    gate = next(i for i, w in enumerate(waves) if "create luna-app-web-admission" in w)
    assert waves.index(replicas[0]) < gate, waves
    deletes = [i for i, w in enumerate(waves) if any(s.startswith("delete") for s in w)]
    assert deletes and all(len(waves[i]) == 1 for i in deletes), waves
    assert min(deletes) > gate, waves


def test_archived_wal_segments_are_told_from_the_repositorys_other_files() -> None:
    """pgBackRest's repository keys (the drill corrupts the newest segment, the alerts
    scenario counts gaps): segments only, in the order they were written."""
    from tests.rehearsal.scenarios.probe import WAL_KEY, wal_segments

    sha = "0" * 39 + "1"
    base = "luna/archive/luna/15-1/0000000100000000"
    keys = [
        f"{base}/00000001000000000000000B-{sha}.zst",
        f"{base}/00000001000000000000000A-{sha}.zst",
        f"{base}/00000001000000000000000A.00000028.backup",
        "luna/archive/luna/15-1/00000002.history",
        "luna/archive/luna/archive.info",
        f"luna/backup/luna/20261207-070000F/pg_data/base/1/1259-{sha}.zst",
    ]
    assert [WAL_KEY.findall(k)[0] for k in wal_segments(keys)] == [
        "00000001000000000000000A",
        "00000001000000000000000B",
    ]


def test_an_interrupted_app_build_stops_its_whole_process_group() -> None:
    """The app's build runs apart (images.py); an interrupt stops every program in its
    group, not only the child (a background one stands in for debootstrap's children)."""
    from tests.rehearsal.images import _stop_group

    proc = subprocess.Popen(["sh", "-c", "sleep 300 & exec sleep 301"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    time.sleep(0.3)
    _stop_group(proc)
    ps = subprocess.run(["ps", "-ww", "-eo", "pgid,stat,args"], capture_output=True, text=True,
                        check=True).stdout  # fmt: skip
    rows = [ln.split(None, 2) for ln in ps.splitlines()[1:]]
    # A zombie is dead: only its reaper (this sandbox's init) has yet to collect it.
    left = [r for r in rows if r[0] == str(proc.pid) and not r[1].startswith("Z")]
    assert proc.returncode is not None and not left, f"still running: {left}"


def test_an_interrupted_applier_stops_its_steps_waits_at_once() -> None:
    """An interrupt sets the applier's stop: a running command is killed and a health
    wait ends, so the pool of steps is left in seconds, not after a 30-minute command."""
    host = DockerHost(socket="/nonexistent/docker.sock", env=dict(os.environ))
    applier = Applier(host)
    applier._stopping.set()
    t0 = time.monotonic()
    proc = applier._run(["sleep", "30"], dict(os.environ))
    assert time.monotonic() - t0 < 5 and proc.returncode != 0, proc
    with pytest.raises(StepError, match="interrupted"):
        applier._wait_healthy("luna-staging-app-0", 60)


def test_the_outage_starts_once_the_runbooks_are_done_with_the_store_and_the_page_beside_backups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """run_all's schedule, with every scenario faked: the drill's failing cases and the
    crisis page start with the backups scenario and are over before the drill; the
    outage starts when the runbooks release the store (after their PITR and minor
    bump), not after they end."""
    from tests.rehearsal import scenarios
    from tests.rehearsal.session import Rehearsal

    events: list[str] = []

    def fake(name: str) -> object:
        def run(r: Rehearsal) -> Outcome:
            events.append(name)
            if name == "up":
                r.figures["applied"] = True
            if name == "runbooks":
                r.release_store()
                events.append("runbooks after the store")
            return Outcome(name, True, "-")

        return run

    def part(what: str) -> tuple[object, object]:
        return (lambda r: events.append(f"{what} starts"), lambda r: events.append(f"{what} over"))

    monkeypatch.setattr(scenarios, "SCENARIOS", {n: fake(n) for n in scenarios.NAMES})
    monkeypatch.setattr(scenarios, "BACKGROUND", {"alerts": lambda r: events.append("outage")})
    monkeypatch.setattr(
        scenarios, "BESIDE",
        {"backups": (("drill", *part("cases")), ("alerts", *part("page")))},
    )  # fmt: skip
    r = Rehearsal("staging", None, None, None, None, None)  # type: ignore[arg-type]
    names = list(scenarios.NAMES)
    assert [o.name for o in scenarios.run_all(names, r)] == names
    assert events[: events.index("phi")] == [
        "up", "idempotence", "cases starts", "page starts", "backups", "cases over",
        "page over", "drill", "runbooks", "outage", "runbooks after the store",
    ], events  # fmt: skip
    assert events.count("outage") == 1 and events.index("outage") < events.index("rotations")
    # Without the drill, its cases are not started; without alerts, neither is the page;
    # the outage still starts when the last scenario that needs the store is done with it.
    events.clear()
    r = Rehearsal("staging", None, None, None, None, None)  # type: ignore[arg-type]
    list(scenarios.run_all(["up", "backups", "deploy", "alerts"], r))
    assert events == ["up", "page starts", "backups", "page over", "outage", "deploy", "alerts"]
    events.clear()
    r = Rehearsal("staging", None, None, None, None, None)  # type: ignore[arg-type]
    list(scenarios.run_all(["up", "backups", "drill"], r))
    assert events == ["up", "cases starts", "backups", "cases over", "drill"], events


def test_two_rehearsals_in_one_process_get_their_own_side_addresses() -> None:
    """The second side address is claimed while the first is held, and neither device
    outlives its rehearsal (prod's rehearsal once reused staging's, from the pid)."""
    from tests.rehearsal.world import side_address

    def devices() -> set[str]:
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
        return {
            w.rstrip(":")
            for w in links.stdout.split()
            if w.startswith(f"lunarh{os.getpid() % 100000}x")
        }

    with side_address() as first, side_address() as second:
        assert not set(first) & set(second), f"both rehearsals got {set(first) & set(second)}"
        assert len(devices()) == 2, devices()
    assert not devices(), f"left behind: {devices()}"


def test_a_backups_history_file_counts_as_its_segment_archived() -> None:
    """The alerts scenario's catch-up read 59 s while the archive had caught up in
    seconds: the last file archived was the backup's ``.backup`` history file."""
    from tests.rehearsal.scenarios.probe import archived_past

    seg = "000000020000000000000018"
    assert archived_past("000000020000000000000019.00000028.backup", seg)
    assert archived_past(seg, seg)
    assert not archived_past("000000020000000000000017", seg)
    assert not archived_past("000000010000000000000019", seg), "another timeline"
    assert not archived_past("00000002.history", seg)
    assert not archived_past("", seg)
