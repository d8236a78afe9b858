"""Which kubelet log files the Kubernetes collector's fluent-bit.conf reads.

fluent-bit's tail ``Path`` and ``Exclude_Path`` are glob(3) patterns, a comma list
for ``Exclude_Path`` (fluent/fluent-bit plugins/in_tail/tail_scan_glob.c,
``fnmatch`` with no flags, so ``*`` and ``?`` also match ``/``, as fnmatchcase does).
The kubelet names files ``<pod>_<namespace>_<container>-<64 hex id>.log``.
tests/real/test_log_pipeline.py checks the same on the rendered stacks (slow).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from components.configs.fluentbit import fluent_bit_conf

CONTAINER_ID = "0123456789abcdef" * 4
NAMESPACE = "luna-prod"


def _reads(conf: str) -> Callable[..., bool]:
    body = conf.split("[INPUT]", 1)[1].split("\n[", 1)[0]
    pairs = [line.split(None, 1) for line in body.strip().splitlines() if line.strip()]
    tail = {p[0]: p[1].strip() if len(p) > 1 else "" for p in pairs}
    excluded = [e for e in tail.get("Exclude_Path", "").split(",") if e]

    def read(pod: str, container: str, namespace: str = NAMESPACE) -> bool:
        path = f"/var/log/containers/{pod}_{namespace}_{container}-{CONTAINER_ID}.log"
        return fnmatch.fnmatchcase(path, tail["Path"]) and not any(
            fnmatch.fnmatchcase(path, e) for e in excluded
        )

    return read


def _conf(exclude: tuple[str, ...]) -> str:
    return fluent_bit_conf(
        namespace=NAMESPACE,
        logstash_host="logstash",
        gelf_port=12201,
        stack="prod",
        exclude_containers=exclude,
    )


def test_the_excluded_containers_are_never_read_and_the_others_are() -> None:
    read = _reads(_conf(("logstash", "elasticsearch")))
    assert not read("logstash-0", "logstash")
    assert not read("elasticsearch-0", "elasticsearch")
    # Exactly those containers: a name that merely starts like one is still read.
    assert read("elasticsearch-exporter-5c7d-x2", "elasticsearch-exporter")
    assert read("app-7d9f-x2", "app") and read("database-1", "postgres")
    assert not read("app-7d9f-x2", "app", namespace="luna-staging"), "another stack's logs"


def test_without_exclusions_every_container_of_the_namespace_is_read() -> None:
    read = _reads(_conf(()))
    assert read("logstash-0", "logstash") and read("app-7d9f-x2", "app")
    assert not read("app-7d9f-x2", "app", namespace="kube-system")
