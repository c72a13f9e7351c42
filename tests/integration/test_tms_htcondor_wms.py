"""The HTCondor backend through the TMS loops against the real WMS, over the fake schedd.

The schedd is the one part that cannot run here (DESIGN §5); everything else is real: the
bindings build the submission, the WMS records it, the jobs' states come from the cluster's
job event log (written here as a schedd and shadow would) and reach the WMS as statuses,
completion is read from the jobs' own events, and a stopped taskforce is removed through
the schedd's `remove`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ewms_tms.config import Config
from ewms_tms.schedulers.htcondor import TMS_REMOVE_REASON, HTCondorScheduler
from ewms_tms.server import TMS
from tests.integration.conftest import WMSUnderTest, make_token
from tests.integration.test_tms_wms import reaches, walked


def _unit_module() -> Any:
    """tests/unit/test_tms_htcondor.py: its fake schedd and event-log writers.

    Loaded from its path: `tests.unit` is shadowed by a `tests/unit` package that a dependency
    (oms-mqclient) installs into site-packages.
    """
    path = Path(__file__).parents[1] / "unit" / "test_tms_htcondor.py"
    spec = importlib.util.spec_from_file_location("tms_htcondor_unit_tests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


htc = _unit_module()
FakeSchedd, aborted, chirped_error, executing, held, terminated = (
    htc.FakeSchedd, htc.aborted, htc.chirped_error, htc.executing, htc.held, htc.terminated,
)  # fmt: skip
IMAGE = "docker://ewms/pilot:test"


@pytest.fixture
async def condor_tms(wms: WMSUnderTest, tmp_path: Path) -> AsyncIterator[tuple[TMS, Any]]:
    location = f"ap-{uuid.uuid4().hex[:8]}"
    config = Config.from_env(
        {
            "TMS_WMS_URL": wms.url,
            "TMS_WMS_TOKEN": make_token("tms", sub=f"tms-{location}"),
            "TMS_CLUSTER_LOCATION": location,
            "TMS_SCHEDULER": "htcondor",
            "TMS_PILOT_IMAGE": IMAGE,
            "TMS_STATE_DIR": str(tmp_path / "tms-state"),
            "TMS_STARTER_INTERVAL": "0.1",
            "TMS_WATCHER_INTERVAL": "0.1",
            "TMS_STOPPER_INTERVAL": "0.1",
        }
    )
    schedd = FakeSchedd()
    backend = HTCondorScheduler(
        schedd,
        log_dir=config.state_dir / "condor-logs",
        pilot_image=config.pilot_image,
        pilot_executable=config.pilot_executable,
    )
    tms = TMS(config, scheduler=backend)
    running = asyncio.create_task(tms.run())
    yield tms, schedd
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await tms.aclose()


def body(location: str) -> dict[str, Any]:
    return {
        "public_queue_aliases": ["in", "out"],
        "tasks": [
            {
                "cluster_locations": [location],
                "input_queue_aliases": ["in"],
                "output_queue_aliases": ["out"],
                "task_image": "icecube/skymap_scanner:3.20.3",
                "task_args": "client --in {{INFILE}} --out {{OUTFILE}}",
                "n_workers": 2,
                "worker_config": {"max_worker_runtime": 3600, "worker_memory": "2G", "n_cores": 2},
            }
        ],
    }


def append(log: str, *events: str) -> None:
    with Path(log).open("a") as f:
        f.writelines(events)


async def test_jobs_reported_from_the_event_log_and_completion_from_the_jobs_themselves(
    wms: WMSUnderTest, condor_tms: tuple[TMS, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tms, schedd = condor_tms
    created = await wms.create_workflow(body(tms.config.cluster_location))
    tf_uuid = created["taskforces"][0]["taskforce_uuid"]

    submitted = await reaches(wms, tf_uuid, phase="condor-submit", compound_statuses={"idle": 2})
    cluster = submitted["cluster_id"]
    log = submitted["job_event_log_fpath"]
    assert log == str(tms.config.state_dir / "condor-logs" / f"cluster-{cluster}.log")
    assert submitted["submit_dict"]["container_image"] == IMAGE
    assert submitted["submit_dict"]["request_memory"] == "2048MB"
    assert "queue 2" in submitted["submit_description"]
    secret = created["mqprofiles"][0]["auth_token"]
    assert secret not in json.dumps(submitted) and secret not in caplog.text
    assert "carried broker credentials" not in caplog.text  # the WMS had nothing to redact
    assert secret in schedd.submissions[0][0].expand("environment")  # only the job gets it

    reason = "Error from slot1@ep7: Failed to pull docker://ewms/pilot:test"
    append(log, executing(cluster, 0), held(cluster, 1, reason))
    await reaches(wms, tf_uuid, compound_statuses={"running": 1, "held": 1}, top_task_errors={reason: 1})

    error = "ContainerRunError: task failed (exit code 1)"
    append(log, terminated(cluster, 0), executing(cluster, 1), chirped_error(cluster, 1, error))
    append(log, terminated(cluster, 1, exit_code=1))
    done = await reaches(wms, tf_uuid, phase="condor-complete")
    assert done["compound_statuses"] == {"completed": 1, "failed": 1}
    assert done["top_task_errors"] == {error: 1}
    assert walked(done) == ["pending-starter", "condor-submit", "condor-complete"]
    assert schedd.removals == []


async def test_a_stopped_taskforce_is_removed_through_the_schedd(
    wms: WMSUnderTest, condor_tms: tuple[TMS, Any]
) -> None:
    tms, schedd = condor_tms
    created = await wms.create_workflow(body(tms.config.cluster_location))
    tf_uuid = created["taskforces"][0]["taskforce_uuid"]
    submitted = await reaches(wms, tf_uuid, phase="condor-submit", compound_statuses={"idle": 2})
    cluster, log = submitted["cluster_id"], submitted["job_event_log_fpath"]

    await wms.user.post(f"/v1/workflows/{created['workflow']['workflow_id']}/actions/abort", {})
    await reaches(wms, tf_uuid, phase="condor-rm")
    assert schedd.removals == [(cluster, TMS_REMOVE_REASON)]

    append(log, aborted(cluster, 0, TMS_REMOVE_REASON), aborted(cluster, 1, TMS_REMOVE_REASON))
    done = await reaches(wms, tf_uuid, phase="condor-complete", compound_statuses={"removed": 2})
    assert done["top_task_errors"] == {}
