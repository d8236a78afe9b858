"""Every host name in the generated files and environments is a service the stack deploys.

On Docker the check is stronger: the service that uses the name joins a
network where it is an alias, so Docker's DNS resolves it from there.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import yaml

from tests.conftest import PLATFORMS
from tests.real.conftest import stack_id
from tests.real.deployed import LOOPBACK, env_of, reachable, service_names, url_hosts
from tests.real.support import RenderedStack

ALL = [(s, p) for s in ("dev", "staging", "prod") for p in PLATFORMS]
# Public names (the app's own URL) are not service names.
PUBLIC_ENV = {"NEXT_PUBLIC_APP_URL"}


def _host(address: str) -> str:
    return address.rsplit(":", 1)[0] if ":" in address else address


def references(stack: RenderedStack) -> list[tuple[str, str, str]]:
    """(consumer service, host, where) for every host name found."""
    refs: list[tuple[str, str, str]] = []
    files = stack.files

    def shipped(path: str) -> str | None:
        keys = [k for k in files if k.endswith(path)]
        return files[keys[0]] if keys else None

    if conf := shipped("/etc/nginx/luna/nginx.conf"):
        block = re.search(r"upstream luna_app \{(.*?)\}", conf, re.S)
        # A static upstream (Kubernetes' Service), or a name resolved per request (Docker).
        found = re.findall(r"^\s*server (\S+)", block.group(1), re.M) if block else []
        found += re.findall(r'^\s*set \$luna_app "(\S+)";', conf, re.M)
        assert found, f"{stack.stack}: nginx.conf names no upstream"
        for addr in found:
            refs.append(("proxy", _host(addr), "nginx.conf upstream"))
    if prom := shipped("/etc/prometheus/prometheus.yml"):
        for job in yaml.safe_load(prom)["scrape_configs"]:
            via = [
                r["replacement"]
                for r in job.get("relabel_configs", [])
                if r.get("target_label") == "__address__"
            ]
            # Probe targets are fetched by the exporter named in the relabelling.
            fetcher = _host(via[0]) if via else "prometheus"
            for v in via:
                refs.append(("prometheus", _host(v), f"prometheus.yml {job['job_name']} relabel"))
            for sc in job.get("static_configs", []):
                for t in sc["targets"]:
                    hosts = url_hosts(t) or {_host(t)}
                    if job["job_name"] == "crisis-edge":
                        # The public name, probed as users reach it: never a service name.
                        public = url_hosts(stack.setting("appUrl"))
                        assert hosts == public, f"{stack.stack}: edge probe {t} is not {public}"
                        continue
                    refs += [(fetcher, h, f"prometheus.yml {job['job_name']}") for h in hosts]
            for sd in job.get("dns_sd_configs", []):
                refs += [
                    ("prometheus", n, f"prometheus.yml {job['job_name']} dns") for n in sd["names"]
                ]
        for am in (yaml.safe_load(prom).get("alerting") or {}).get("alertmanagers", []):
            for sc in am.get("static_configs", []):
                refs += [("prometheus", _host(t), "prometheus.yml alerting") for t in sc["targets"]]
            for sd in am.get("dns_sd_configs", []):
                refs += [("prometheus", n, "prometheus.yml alerting dns") for n in sd["names"]]
    if ds := shipped("/etc/grafana/provisioning/datasources/luna.yaml"):
        for d in yaml.safe_load(ds)["datasources"]:
            refs += [("grafana", h, "grafana datasource") for h in url_hosts(d["url"])]
    if ls := shipped("/usr/share/logstash/pipeline/logstash.conf"):
        out = ls[ls.index("output {") :]
        refs += [("logstash", h, "logstash output") for h in url_hosts(out)]
    if es := shipped("/opt/luna/es-setup.sh"):
        refs += [("elasticsearch-setup", h, "es-setup.sh") for h in url_hosts(es)]
    if drill := shipped("/opt/luna/drill.sh"):
        refs += [("database-drill", h, "drill.sh") for h in url_hosts(drill)]
    if start := shipped("/opt/luna/start.sh"):
        refs += [("database", h, "start.sh") for h in url_hosts(start)]
    if fb := shipped("fluent-bit.conf"):
        for h in re.findall(r"^\s*Host\s+(\S+)", fb, re.M):
            refs.append(("fluent-bit", h, "fluent-bit.conf"))
    for service, env in env_of(stack).items():
        for key, value in env.items():
            if key in PUBLIC_ENV:
                continue
            hosts = url_hosts(value)
            if key in ("PGHOST",):
                hosts.add(value)
            if key == "DATA_SOURCE_URI":
                hosts.add(_host(value.split("/", 1)[0]))
            refs += [(service, h, f"env {key}") for h in hosts]
    return refs


@pytest.mark.parametrize("stack_platform", ALL, ids=stack_id)
def test_every_host_name_is_a_deployed_service_reachable_by_its_user(
    stack_platform: tuple[str, str], stacks: Callable[[str, str], RenderedStack]
) -> None:
    stack = stacks(*stack_platform)
    deployed = service_names(stack)
    refs = references(stack)
    if stack.setting("monitoring") == "true":
        # The scan must find the files it claims to check.
        wheres = {w.split()[0] for _, _, w in refs}
        assert {"nginx.conf", "prometheus.yml", "grafana", "env"} <= wheres, wheres
    unknown = [(c, h, w) for c, h, w in refs if h not in deployed | LOOPBACK]
    assert not unknown, f"{stack.stack}/{stack.platform}: names no service deploys: {unknown}"
    unreachable = [(c, h, w) for c, h, w in refs if h not in reachable(stack, c)]
    assert not unreachable, (
        f"{stack.stack}/{stack.platform}: deployed but not reachable from the user: {unreachable}"
    )
    loopback = [(c, h, w) for c, h, w in refs if h in LOOPBACK]
    assert all(c == "prometheus" for c, _, _ in loopback), (
        f"{stack.stack}: loopback used by a service other than Prometheus' self-scrape: {loopback}"
    )
