"""One-shot and scheduled jobs on Kubernetes: the Job and CronJob bodies.

Jobs are immutable (pulumi-kubernetes#2575), so a migration's Job is named
after its image and command (:func:`job_name`): a new image is a new Job,
replaced rather than patched, which must complete before its dependants roll.
The bodies are built by pure functions; :mod:`.workloads` creates the objects.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pulumi

from components.spec import ServiceSpec

__all__ = ["JOB_DEADLINE_S", "cron_job_spec", "job_name", "job_spec", "job_timeouts"]

Manifest = dict[str, Any]

JOB_DEADLINE_S = 1800


def job_name(service: str, spec: ServiceSpec) -> str:
    """A Job's name that changes with its image and command.

    Jobs are immutable (pulumi-kubernetes#2575), so a new image needs a new Job.
    """
    identity = json.dumps([spec.image, spec.command, spec.args], sort_keys=True)
    return f"{service}-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"


def job_spec(template: Manifest) -> Manifest:
    """A Job that runs ``template`` once to completion, within :data:`JOB_DEADLINE_S`."""
    return {
        "backoffLimit": 3,
        "activeDeadlineSeconds": JOB_DEADLINE_S,
        "template": _restart(template, "Never"),
    }


def job_timeouts() -> pulumi.ResourceOptions:
    """pulumi-kubernetes waits 10 minutes for a Job unless told otherwise; this one
    may run for its whole activeDeadlineSeconds, plus time to be scheduled."""
    wait = f"{JOB_DEADLINE_S // 60 + 5}m"
    return pulumi.ResourceOptions(custom_timeouts=pulumi.CustomTimeouts(create=wait, update=wait))


def cron_job_spec(spec: ServiceSpec, template: Manifest, labels: Manifest) -> Manifest:
    """A CronJob that runs ``template`` every ``spec.schedule_hours`` (daily at most)."""
    assert spec.schedule_hours is not None
    return {
        "schedule": f"17 */{spec.schedule_hours} * * *"
        if spec.schedule_hours < 24
        else "17 3 * * *",
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 600,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "metadata": {"labels": labels},
            "spec": {
                "backoffLimit": 2,
                "activeDeadlineSeconds": 3600,
                "template": _restart(template, "OnFailure"),
            },
        },
    }


def _restart(template: Manifest, policy: str) -> Manifest:
    return {**template, "spec": {**template["spec"], "restartPolicy": policy}}
