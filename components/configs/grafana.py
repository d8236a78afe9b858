"""Grafana provisioning: the Prometheus datasource and the Luna dashboard."""

from __future__ import annotations

import json
from typing import Any

import yaml

__all__ = ["DASHBOARD_DIR", "dashboard_provider", "datasources", "luna_dashboard"]

# Outside /var/lib/grafana, which is a volume: shipped files must not land in it.
DASHBOARD_DIR = "/etc/grafana/dashboards"


def datasources(*, prometheus_url: str) -> str:
    doc = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": "luna-prometheus",
                "type": "prometheus",
                "access": "proxy",
                "url": prometheus_url,
                "isDefault": True,
                "editable": False,
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def dashboard_provider() -> str:
    doc = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "luna",
                "folder": "Luna",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "options": {"path": DASHBOARD_DIR},
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _panel(pid: int, title: str, expr: str, unit: str, x: int, y: int) -> dict[str, Any]:
    return {
        "id": pid,
        "title": title,
        "type": "timeseries",
        "datasource": {"type": "prometheus", "uid": "luna-prometheus"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": "A", "expr": expr}],
    }


def luna_dashboard(*, stack: str, error_budget: float = 0.001) -> dict[str, Any]:
    """The Luna overview: traffic, errors, latency, the crisis path, data services.

    ``error_budget`` is the crisis SLO's allowed bad fraction (0.001 for 99.9 %);
    the budget panels show what is left of it over 30 days (or the retention).
    """
    specs = [
        ("Requests per second", 'sum(rate(http_requests_total{job="app"}[5m]))', "reqps"),
        (
            "5xx ratio",
            'sum(rate(http_requests_total{job="app",status=~"5.."}[5m]))'
            ' / sum(rate(http_requests_total{job="app"}[5m]))',
            "percentunit",
        ),
        (
            "Latency p95",
            "histogram_quantile(0.95, sum by (le) "
            '(rate(http_request_duration_seconds_bucket{job="app"}[5m])))',
            "s",
        ),
        ("Crisis endpoint up", 'probe_success{job="crisis-probe"}', "bool"),
        ("Crisis endpoint latency", 'probe_duration_seconds{job="crisis-probe"}', "s"),
        ("App replicas up", 'sum(up{job="app"})', "short"),
        ("PostgreSQL up", 'pg_up{job="postgres"}', "bool"),
        (
            # Look the text up by queryid in pg_stat_statements (normalised, no literals).
            "Slowest statements, mean time by queryid",
            'topk(5, sum by (queryid) (rate(pg_stat_statements_seconds_total{job="postgres"}[5m]))'
            ' / sum by (queryid) (rate(pg_stat_statements_calls_total{job="postgres"}[5m]) > 0))',
            "s",
        ),
        ("Redis memory used", 'redis_memory_used_bytes{job="redis"}', "bytes"),
        ("Nginx active connections", 'nginx_connections_active{job="nginx"}', "short"),
        (
            "Hours since last backup",
            "(time() - luna_backup_last_success_timestamp_seconds) / 3600",
            "h",
        ),
        (
            "Crisis availability error budget left (30d)",
            f"1 - avg_over_time(luna:crisis_probe_errors:bool[30d]) / {error_budget:.6g}",
            "percentunit",
        ),
        (
            "Crisis latency error budget left (30d)",
            f"1 - avg_over_time(luna:crisis_probe_slow:bool[30d]) / {error_budget:.6g}",
            "percentunit",
        ),
    ]
    panels = [
        _panel(i + 1, title, expr, unit, (i % 2) * 12, (i // 2) * 8)
        for i, (title, expr, unit) in enumerate(specs)
    ]
    return {
        "uid": f"luna-overview-{stack}",
        "title": f"Luna overview ({stack})",
        "tags": ["luna", stack],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "panels": panels,
    }


def dashboard_json(*, stack: str, error_budget: float = 0.001) -> str:
    return (
        json.dumps(luna_dashboard(stack=stack, error_budget=error_budget), indent=2, sort_keys=True)
        + "\n"
    )


__all__ += ["dashboard_json"]
