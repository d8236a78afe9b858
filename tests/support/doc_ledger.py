"""The ledger of the docs' commands: each one runs in a named test, or its block says why not.

Commands come from the command blocks (```bash, ```sh, ```shell, ```console) of
README.md and docs/**/*.md, one per statement (continuation lines, pipelines and
open quotes joined), and from inline code that starts with a Python invocation
or a ``pulumi config set luna:``.

A command *runs* when a runner below matches it: each runner names the test that
executes it, and what it runs against. A command no runner matches must sit in a
block whose fence is preceded by a marker that says why it cannot run here::

    <!-- not-run: <the reason, naming what is missing and what test covers it> -->

A marker on a block all of whose commands run is stale, and fails the ledger test.

Print the count (ran / marked / total, and each command's verdict) with::

    .venv/bin/python -m tests.support.doc_ledger [--list]
"""

from __future__ import annotations

import re
import shlex
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RUNNERS", "Command", "doc_commands", "ledger", "main", "verdict"]

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(
    r"(?:<!--\s*(?P<marker>[\w-]+):(?P<why>(?:(?!-->).)*)-->\s*\n)?```(?P<lang>bash|sh|shell|console)\n"
    r"(?P<body>.*?)```",
    re.S,
)
INLINE = re.compile(r"`((?:\.venv/bin/)?python3? [^`]+|pulumi config set [^`]*luna:[^`]+)`")


@dataclass(frozen=True)
class Command:
    doc: str
    """The file, relative to the repository."""
    text: str
    block: str | None
    """The whole block it came from (None for inline code)."""
    marker: str | None
    """The block's ``<!-- not-run: ... -->`` reason, if it has one."""
    tag: str | None
    """The block's marker name (``not-run``, ``dev-commands``, ...)."""


def statements(block: str) -> Iterator[str]:
    """Whole commands: continuation lines, pipelines and open quotes joined."""
    pending = ""
    for raw in block.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        yield pending
        pending = ""
    if pending:
        yield pending


def _joined(found: list[Command]) -> list[Command]:
    """A pipeline continued on the next line with ``|`` belongs to its command."""
    out: list[Command] = []
    for c in found:
        if c.text.startswith("|") and out:
            last = out[-1]
            out[-1] = Command(last.doc, f"{last.text} {c.text}", last.block, last.marker, last.tag)
        else:
            out.append(c)
    return out


def doc_commands() -> list[Command]:
    found: list[Command] = []
    for path in DOCS:
        text = path.read_text()
        name = str(path.relative_to(REPO))
        for m in FENCE.finditer(text):
            tag = m.group("marker")
            why = m.group("why").strip() if tag == "not-run" else None
            found += [
                Command(name, s, m.group("body"), why, tag) for s in statements(m.group("body"))
            ]
        outside = re.sub(r"```.*?```", "", text, flags=re.S)
        found += [Command(name, cmd, None, None, None) for cmd in INLINE.findall(outside)]
    return _joined(found)


# --- Runners: which test runs a command, and against what. -----------------------------

NEEDS_A_SITE = re.compile(r"scripts/smoke_check\.py (check|perf) |scripts/audit_site\.py --url ")
RUNS_HERE = re.compile(r"^(\.venv/bin/python |python3 scripts/smoke_check\.py image )")


def _runs_here(c: Command) -> bool:
    return bool(RUNS_HERE.match(c.text)) and not NEEDS_A_SITE.search(c.text)


SITE = re.compile(
    r"^python3 scripts/smoke_check\.py (check|perf) --url https://(staging\.)?luna-app\.com "
)


def _site(c: Command) -> bool:
    return bool(SITE.match(c.text))


def _pulumi_alone(c: Command) -> bool:
    """A pulumi command (or two joined by &&) that pipes into no other program."""
    parts = re.split(r"\s*&&\s*", c.text)
    return all(p.startswith("pulumi ") for p in parts) and not re.search(
        r"\|\s*(?!pulumi)\w", c.text
    )


def _dev_block(c: Command) -> bool:
    return c.tag == "dev-commands"


def _rehearsal_pitr(c: Command) -> bool:
    """The blocks the rehearsal's runbooks scenario runs, picked by its own selectors."""
    from tests.rehearsal.scenarios.runbooks import RUNBOOKS, docker_blocks

    if c.doc != "docs/runbooks/backup-restore.md" or c.block is None:
        return False
    text = (RUNBOOKS / "backup-restore.md").read_text()
    return c.block in docker_blocks(text, "Point-in-time recovery on a Docker host")[:1]


def _rehearsal_rotation(c: Command) -> bool:
    """rotation.md's emergency block: the scenario runs its lines that are not ``pulumi``
    (the ``pulumi`` ones become a render and the applier's up), with ``new=$(openssl ...)``
    replaced by a value it knows; that line runs for real in tests/test_doc_runs.py."""
    return (
        c.doc == "docs/runbooks/rotation.md"
        and c.block is not None
        and "ALTER ROLE" in c.block
        and "docker exec" in c.block
        and c.text.startswith("printf ")
    )


def _real_shell(c: Command) -> bool:
    return c.text == "new=$(openssl rand -hex 24)"


def _kubectl(c: Command) -> bool:
    return c.text.startswith("kubectl ")


def _helm(c: Command) -> bool:
    return c.text.startswith("helm ")


def _es_curl(c: Command) -> bool:
    return (
        c.block is not None
        and "localhost:9200" in c.block
        and c.text.startswith(("curl ", "printf "))
    )


def _jq(c: Command) -> bool:
    return c.text.startswith("jq ") and c.doc == "docs/runbooks/state-recovery.md"


def _ci(c: Command) -> bool:
    """The test command itself, and what it runs verbatim (scripts/test)."""
    first = c.text.split()[0]
    if first == "./scripts/test" and c.text.split("#")[0].strip() == "./scripts/test":
        return True
    return (
        first == "./scripts/install-lighthouse"
        and "./scripts/install-lighthouse" in (REPO / "scripts" / "test").read_text()
    )


def _dev_script(c: Command) -> bool:
    text = c.text.split("#")[0].strip()
    return (
        text in ("./scripts/deploy-dev", 'eval "$(./scripts/dev-env)"') and c.tag != "dev-commands"
    )


def _break_glass_venv(c: Command) -> bool:
    return c.doc == "docs/runbooks/break-glass.md" and (
        c.text == "python3 -m venv .venv" or c.text.startswith(".venv/bin/pip install ")
    )


def _git_commit(c: Command) -> bool:
    return c.doc == "docs/first-deploy.md" and c.text.startswith("git add Pulumi.staging.yaml")


def _record(c: Command) -> bool:
    return c.doc == "docs/runbooks/break-glass.md" and c.text.startswith(
        "python3 scripts/record_deploy.py "
    )


@dataclass(frozen=True)
class Runner:
    name: str
    matches: Callable[[Command], bool]
    test: str
    """The test that runs the command, and what it runs against."""


RUNNERS: tuple[Runner, ...] = (
    Runner(
        "here",
        _runs_here,
        "tests/test_doc_commands.py::test_doc_commands_that_can_run_here_"
        "succeed: in a copy of the checkout, exit 0",
    ),
    Runner(
        "pulumi",
        _pulumi_alone,
        "tests/test_doc_commands.py::test_pulumi_commands_parse_"
        "against_the_cli_stand_in: the Pulumi CLI stand-in (tests/support/pulumi_cli.py; "
        "the CLI reference's commands and flags, this project's stacks, keys and values)",
    ),
    Runner(
        "site",
        _site,
        "tests/test_doc_runs.py::test_smoke_checks_pass_against_the_site_stand_in: the smoke "
        "check as written, the docs' hosts resolved to a stand-in site in a private network "
        "namespace (tests/support/site_stand_in.py)",
    ),
    Runner(
        "dev-shell",
        _dev_block,
        "tests/test_dev_shell.py::test_readme_dev_commands_reach_"
        "change_and_tear_down_dev: the README's block by bash, stub pulumi and docker",
    ),
    # The rehearsal's runbooks scenario (tests/rehearsal/test_rehearsal.py::test_runbooks,
    # in the test command) runs these blocks verbatim on a real Docker daemon.
    Runner(
        "rehearsal",
        _rehearsal_pitr,
        "tests/rehearsal/scenarios/runbooks.py (_pitr): the block as written on a real "
        "Docker daemon, placeholders from the stack's outputs",
    ),
    Runner(
        "rehearsal",
        _rehearsal_rotation,
        "tests/rehearsal/scenarios/runbooks.py (_rotation_block): on a real Docker daemon",
    ),
    Runner(
        "real-shell",
        _real_shell,
        "tests/test_doc_runs.py::test_the_rotation_value_is_made_by_real_openssl",
    ),
    Runner(
        "kubectl",
        _kubectl,
        "tests/test_doc_runs.py::test_kubectl_commands_run_against_"
        "the_render: real kubectl (and a cnpg plugin stand-in) against an API stand-in "
        "serving the rendered manifests (tests/support/kube_api.py)",
    ),
    Runner(
        "helm",
        _helm,
        "tests/test_doc_runs.py::test_helm_commands_parse_against_the_"
        "stand_in: helm's reference flags, the charts and versions the program pins "
        "(tests/support/helm_cli.py)",
    ),
    Runner(
        "curl",
        _es_curl,
        "tests/test_doc_runs.py::test_elasticsearch_blocks_run_with_real_"
        "curl: against an Elasticsearch API stand-in that knows what the rendered setup "
        "script creates (tests/support/es_api.py)",
    ),
    Runner(
        "ci",
        _ci,
        ".ci/run runs ./scripts/test on every CI build (tests/test_docs.py "
        "holds .ci/run to it), and ./scripts/test runs ./scripts/install-lighthouse",
    ),
    Runner(
        "dev-script",
        _dev_script,
        "tests/test_doc_runs.py::test_deploy_dev_blocks_run_with_"
        "the_dev_stubs: the block by bash, the dev shell test's stub pulumi and docker",
    ),
    Runner(
        "venv",
        _break_glass_venv,
        "tests/test_doc_runs.py::test_break_glass_builds_its_venv_"
        "from_the_lock: in a copy of the checkout, with pip's configured index",
    ),
    Runner(
        "git",
        _git_commit,
        "tests/test_doc_runs.py::test_first_deploy_commits_the_stack_"
        "file: real git in a committed copy, after the stack file changes as stack init's",
    ),
    Runner(
        "s3",
        _record,
        "tests/test_doc_runs.py::test_break_glass_records_the_deploy_write_once: as written "
        "from a workstation (no GITHUB_* variables), into moto's S3 with Object Lock",
    ),
    Runner(
        "jq",
        _jq,
        "tests/test_doc_runs.py::test_state_recovery_jq_turns_a_checkpoint_into_"
        "an_export: real jq on a checkpoint in the diy backend's format",
    ),
)


def verdict(c: Command) -> tuple[str, str] | None:
    """("ran", runner) or ("marked", reason); None when neither (the ledger test fails)."""
    runner = next((r for r in RUNNERS if r.matches(c)), None)
    if runner is not None:
        return runner.name, runner.test
    if c.marker:
        return "marked", c.marker
    return None


def ledger() -> list[tuple[Command, tuple[str, str] | None]]:
    return [(c, verdict(c)) for c in doc_commands()]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    rows = ledger()
    kinds = Counter(v[0] if v else "UNACCOUNTED" for _, v in rows)
    ran = sum(n for k, n in kinds.items() if k not in ("marked", "UNACCOUNTED"))
    if "--list" in args:
        for c, v in rows:
            kind, how = v or ("UNACCOUNTED", "")
            print(f"{kind:12} {c.doc}: {c.text[:110]}")
            if kind == "marked":
                print(f"{'':12}   why: {how}")
    total = len(rows)
    by = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
    print(
        f"ran {ran} / marked {kinds['marked']} / total {total} ({100 * ran / total:.1f}% run; {by})"
    )
    # "ci" is the test command itself: say what the count is without it.
    strict = ran - kinds["ci"]
    print(f"without the test command itself: {strict} / "
          f"{total} ({100 * strict / total:.1f}%)")  # fmt: skip
    return 1 if kinds["UNACCOUNTED"] else 0


if __name__ == "__main__":
    sys.exit(main())
