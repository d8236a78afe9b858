"""The rendered Logstash filters, read as Logstash reads them, run by Ruby's regexp engine.

The pipeline and logstash.yml are the files the render ships. They are parsed
by tests/support/lscl.py, a model of Logstash's LSCL grammar and string
handling built from its source (cited there), which honours
``config.support_escapes`` as logstash.yml sets it. The prune whitelist, the
gsub triples and the routing conditions it reads are then run by Debian's
``ruby`` (tests/support/logstash_filters.rb) over a corpus of log lines.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.real.conftest import FULL_STACK_PARAMS, FULL_STACKS, stack_id
from tests.real.phi_corpus import CLEAN, PHI
from tests.real.support import RenderedStack, substitute
from tests.support import lscl
from tests.support.tools import REPO, need

PIPELINE = "/usr/share/logstash/pipeline/logstash.conf"
LOGSTASH_YML = "/usr/share/logstash/config/logstash.yml"
FILTERS_RB = REPO / "tests" / "support" / "logstash_filters.rb"


@dataclass
class Filters:
    whitelist: list[str]
    gsub: list[tuple[str, str, str]]
    audit: list[tuple[str, str, str]]
    """The audit branch's condition: (field, ``==`` or ``=~``, text or regexp), all must hold."""

    def run(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self._ruby(events, lenient=False)
        return out

    def run_lenient(self, events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
        """As run, but patterns that do not compile are dropped and listed."""
        out = self._ruby(events, lenient=True)
        return out["events"], out["broken"]

    def _ruby(self, events: list[dict[str, Any]], *, lenient: bool) -> Any:
        payload = {
            "whitelist": self.whitelist,
            "gsub": self.gsub,
            "audit": self.audit,
            "events": events,
            "lenient": lenient,
        }
        result = subprocess.run(
            [need("ruby"), str(FILTERS_RB)],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"ruby: {result.stderr}"
        return json.loads(result.stdout)


def read_filters(pipeline: str, logstash_yml: str) -> Filters:
    """What Logstash would hand its filters, per the LSCL model."""
    sections = lscl.parse(pipeline, escapes=lscl.support_escapes(logstash_yml))
    filters = lscl.plugins(sections, "filter")
    whitelist = [
        name
        for p in filters
        if p.name == "prune"
        for names in p.get_all("whitelist_names")
        for name in names
    ]
    gsub: list[tuple[str, str, str]] = []
    for p in filters:
        for value in p.get_all("gsub") if p.name == "mutate" else []:
            assert len(value) % 3 == 0, f"gsub of {len(value)} items is not triples"
            gsub += [tuple(value[i : i + 3]) for i in range(0, len(value), 3)]
    # event.sprintf would expand %{...} in a replacement; the Ruby runner does not.
    assert not [r for _, _, r in gsub if "%{" in r], "a replacement holds a field reference"
    audit: list[tuple[str, str, str]] = []
    for name, items in sections:
        for item in items:
            if name == "filter" and isinstance(item, lscl.Branch):
                for condition, _ in item.clauses:
                    if condition and "[message]" in condition:
                        audit += _conjuncts(condition)
    return Filters(whitelist=whitelist, gsub=gsub, audit=audit)


_TERM = re.compile(r'\[(\w+)\]\s*(==|=~)\s*("(?:[^"\\]|\\.)*"|/(?:\\/|[^/])*/)')


def _conjuncts(condition: str) -> list[tuple[str, str, str]]:
    """``[field] == "text"`` and ``[field] =~ /re/`` terms joined by ``and``: the only
    condition shape the model runs (anything else fails here, not silently)."""
    terms = [(m.group(1), m.group(2), m.group(3)) for m in _TERM.finditer(condition)]
    rest = _TERM.sub("", condition).split()
    assert terms and set(rest) <= {"and"}, f"condition the model cannot run: {condition}"
    regexps = iter(lscl.condition_regexps(condition))
    return [(f, op, next(regexps) if op == "=~" else v[1:-1]) for f, op, v in terms]


@pytest.fixture(params=FULL_STACK_PARAMS, ids=stack_id)
def stack(
    request: pytest.FixtureRequest, stacks: Callable[[str, str], RenderedStack]
) -> RenderedStack:
    return stacks(*request.param)


def _filters(stack: RenderedStack) -> Filters:
    return read_filters(stack.file("logstash", PIPELINE), stack.file("logstash", LOGSTASH_YML))


def _survivors(out: str, identifiers: tuple[str, ...]) -> list[str]:
    """Identifiers left in ``out``: whole, or any run of 3+ of their digits."""
    left = [i for i in identifiers if i in out]
    for ident in identifiers:
        left += [g for g in re.findall(r"\d{3,}", ident) if g in out and g not in left]
    return left


def test_phi_corpus_leaves_no_identifier(stack: RenderedStack) -> None:
    filters = _filters(stack)
    assert filters.gsub, f"{stack.stack}: {PIPELINE} has no gsub"
    out = filters.run([{"message": line} for line, _ in PHI])
    leaks = {
        line: (event["message"], left)
        for (line, idents), event in zip(PHI, out, strict=True)
        if (left := _survivors(event["message"], idents))
    }
    total = sum(len(idents) for _, idents in PHI)
    print(
        f"\n{stack.stack}/{stack.platform}: PHI corpus {len(PHI)} lines, {total} identifiers, "
        f"{sum(len(v[1]) for v in leaks.values())} survived"
    )
    assert len(PHI) >= 40
    assert not leaks, f"{stack.stack}: {PIPELINE} leaks " + "; ".join(
        f"{left} in {after!r}" for after, left in leaks.values()
    )


def test_clean_corpus_loses_nothing(stack: RenderedStack) -> None:
    out = _filters(stack).run([{"message": line} for line in CLEAN])
    changed = [
        (line, e["message"]) for line, e in zip(CLEAN, out, strict=True) if e["message"] != line
    ]
    print(
        f"\n{stack.stack}/{stack.platform}: clean corpus {len(CLEAN)} lines, "
        f"{len(CLEAN) - len(changed)} unchanged"
    )
    assert len(CLEAN) >= 15
    assert not changed, f"{stack.stack}: {PIPELINE} mangles " + "; ".join(
        f"{a!r} into {b!r}" for a, b in changed
    )


def test_every_free_text_field_is_redacted_and_unlisted_fields_are_dropped(
    stack: RenderedStack,
) -> None:
    (event,) = _filters(stack).run(
        [
            {
                "@timestamp": "2026-01-15T10:42:07.123Z",
                "message": "callback 555-123-4567",
                "full_message": "Error: for jane.doe@example.com\n    at /app/x.js:1:1",
                "command": "node server.js --notify=+44 20 7946 0958",
                "container_name": "luna-prod-app-0",
                "user_email": "jane.doe@example.com",
            }
        ]
    )
    text = json.dumps(event)
    for bit in ("555-123-4567", "jane.doe@example.com", "7946 0958"):
        assert bit not in text, f"{stack.stack}: {bit} survives in {event}"
    assert "user_email" not in event, f"{stack.stack}: an unlisted field reaches the index"
    # Redacted, not dropped: the error text and the stack trace are what operators read.
    kept = {
        "message": "callback ",
        "full_message": "Error: for [email redacted]\n    at /app/x.js:1:1",
        "command": "node server.js --notify=",
    }
    for field, text in kept.items():
        assert text in event.get(field, ""), (
            f"{stack.stack}: {field} does not reach the index redacted: {event.get(field)!r}"
        )
    assert event["container_name"] == "luna-prod-app-0", f"{stack.stack}: {event}"


def test_without_support_escapes_the_same_pipeline_redacts_nothing(stack: RenderedStack) -> None:
    # The control: Logstash's default (config.support_escapes false) keeps "\\d"
    # as two backslashes and a d, so the same patterns must then fail.
    yml = substitute(
        stack.file("logstash", LOGSTASH_YML),
        "config.support_escapes: true",
        "",
        what=f"{stack.stack}: {LOGSTASH_YML}",
    )
    filters = read_filters(stack.file("logstash", PIPELINE), yml)
    # Some patterns do not even compile then (Logstash would refuse the
    # pipeline); the rest are run to show they match nothing useful.
    out, broken = filters.run_lenient([{"message": line} for line, _ in PHI])
    leaked = sum(
        1 for (_, idents), e in zip(PHI, out, strict=True) if _survivors(e["message"], idents)
    )
    print(
        f"\n{stack.stack}: without config.support_escapes {len(broken)}/{len(filters.gsub)} "
        f"patterns fail to compile and {leaked}/{len(PHI)} PHI lines leak"
    )
    assert leaked >= len(PHI) // 2, f"{stack.stack}: escapes off still redacts ({leaked} leak)"


AUDIT_LINES = [
    "2026-01-15 10:42:07.123 UTC [71] user=luna_app db=luna app=luna-web client=10.0.3.12 LOG:  "
    "AUDIT: OBJECT,3,1,READ,SELECT,TABLE,public.journal_entries,<not logged>,<not logged>",
    "2026-01-15 10:42:07.125 UTC [71] user=luna_app db=luna app=luna-web client=10.0.3.12 LOG:  "
    "AUDIT: OBJECT,4,1,WRITE,UPDATE,TABLE,public.journal_entries,<not logged>,<not logged>",
    "2026-01-15 10:43:00.001 UTC [80] user=postgres db=luna app=psql client=[local] LOG:  "
    "AUDIT: SESSION,1,1,ROLE,ALTER ROLE,,,<not logged>,<not logged>",
]
# The database's own lines that are not audit records, one quoting pgaudit's text.
DATABASE_OTHER = [
    "2026-01-15 10:42:07.100 UTC [71] user=luna_app db=luna app=luna-web client=10.0.3.12 LOG:  "
    "connection authorized: user=luna_app database=luna SSL enabled",
    "2026-01-15 10:42:08.000 UTC [72] user=luna_app db=luna app=luna-web client=10.0.3.12 ERROR:  "
    'invalid input syntax for type uuid: "x client=1 LOG:  AUDIT: OBJECT,9,1,WRITE,DELETE"',
]


def _origins(stack: RenderedStack) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The database's origin fields, as the runtime sets them, and others' origins
    (the app, the restore drill's copy, another namespace's database)."""
    s = stack.stack
    if stack.platform == "docker":
        return {"tag": f"{s}/database", "container_name": f"luna-{s}-database-0a1b"}, [
            {"tag": f"{s}/app", "container_name": f"luna-{s}-app-0-9f8e"},
            {"tag": f"{s}/database-drill"},
            {"container_name": f"luna-{s}-database-0a1b"},  # no tag: not proven
        ]
    path = "/var/log/containers/{}_{}_{}-" + "a" * 64 + ".log"
    return {"log_file": path.format("database-1", f"luna-{s}", "postgres")}, [
        {"log_file": path.format("app-7c9d-x2", f"luna-{s}", "app")},
        {"log_file": path.format("database-1", f"luna-{s}", "bootstrap-controller")},
        {"log_file": path.format("database-1", "other-ns", "postgres")},
        {"log_file": path.format("database-1x", f"luna-{s}", "postgres")},
    ]


def test_only_the_databases_audit_stream_enters_the_audit_index(stack: RenderedStack) -> None:
    """Origin by a field the runtime sets (Docker's log tag, the node's log file),
    never by text: the app printing pgaudit's exact line stays in the logs index,
    and each record keeps its source field through the filters."""
    pipeline = stack.file("logstash", PIPELINE)
    filters = _filters(stack)
    fields = {f for f, _, _ in filters.audit}
    assert "message" in fields and fields - {"message"}, f"{stack.stack}: audit by text only"
    database, others = _origins(stack)
    events = [{**database, "message": m} for m in AUDIT_LINES + DATABASE_OTHER + list(CLEAN)]
    spoofs = [{**origin, "message": m} for origin in others for m in AUDIT_LINES]
    out = filters.run(events + spoofs)
    routed = [e for e in out if e["__audit"]]
    assert [e["message"] for e in routed] == AUDIT_LINES, (
        f"{stack.stack}/{stack.platform}: audit routing picked "
        f"{[(e.get('tag') or e.get('log_file'), e['message'][:60]) for e in routed]}"
    )
    for e in routed:
        assert {k: e.get(k) for k in database} == database, f"{stack.stack}: source lost: {e}"
    print(f"\n{stack.stack}/{stack.platform}: {len(routed)} audit records from the database, "
          f"{len(spoofs)} spoofed lines kept out")  # fmt: skip
    output = pipeline[pipeline.index("output {") :]
    assert f'index => "luna-{stack.stack}-%{{[@metadata][index]}}-%{{+YYYY.MM.dd}}"' in output
    assert re.search(r'add_field => \{ "\[@metadata\]\[index\]" => "audit" \}', pipeline)
    assert re.search(r'action => "create"', output), f"{stack.stack}: output may overwrite"


@pytest.mark.parametrize("name", FULL_STACKS)
def test_kubernetes_collector_records_keep_their_fields_and_are_redacted(
    name: str, stacks: Callable[[str, str], RenderedStack]
) -> None:
    """Fluent Bit's JSON lines (tcp input, json_lines codec) meet the same filters.

    The record's keys are read from the rendered collector config: the cri
    parser's named groups less its Time_Key (Fluent Bit removes it, Time_Keep
    off), the record_modifier's Record keys, and the output's json_date_key.
    The json_lines codec makes each line's object the event as it is
    (logstash-codec-json_lines: ``LogStash::Event.new(decoded)``).
    """
    stack = stacks(name, "kubernetes")
    conf = stack.file("log-collector", "/fluent-bit/etc/fluent-bit.conf")
    parsers = stack.file("log-collector", "/fluent-bit/etc/parsers.conf")
    regex = re.search(r"(?m)^\s*Regex\s+(.+)$", parsers).group(1)  # type: ignore[union-attr]
    time_key = re.search(r"(?m)^\s*Time_Key\s+(\S+)$", parsers).group(1)  # type: ignore[union-attr]
    keys = [k for k in re.findall(r"\(\?<(\w+)>", regex) if k != time_key]
    keys += re.findall(r"(?m)^\s*Record\s+(\S+)\s", conf)
    keys.append(re.search(r"(?mi)^\s*json_date_key\s+(\S+)$", conf).group(1))  # type: ignore[union-attr]
    values = {k: f"{k}-value" for k in keys}
    event = {**values, "message": "callback 555-123-4567 for jane.doe@example.com", "port": 51234}
    (out,) = _filters(stack).run([event])
    print(f"\n{name}/kubernetes: collector keys {sorted(keys)}; after the filters {sorted(out)}")
    assert {"message", "stack", "namespace", "@timestamp"} <= set(keys), keys
    lost = [k for k in keys if k not in out]
    assert not lost, f"{name}: the pipeline drops the collector's fields {lost}"
    for bit in ("555-123-4567", "jane.doe@example.com"):
        assert bit not in out["message"], f"{name}: {bit} survives in {out['message']!r}"
    assert "port" not in out, f"{name}: the tcp input's connection field reaches the index"
