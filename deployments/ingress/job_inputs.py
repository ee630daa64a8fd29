"""Per task, what a job's input must hold; checked against the catalog and the upload before the
job is queued, so a bad request is a 4xx now rather than a failed job later. The same rules, as schemas,
are what the spec says a job's `input` holds (TaskInput, run_by_task_or_model). Each task's rule comes from
its API area (areas.py: a routes module's JOBS); source separation's, the seed's own, is here."""

from __future__ import annotations

from functools import reduce
from operator import or_
from typing import Annotated, Any

from pydantic import BeforeValidator

from deployments.errors import InvalidRequest
from deployments.families.separation.protocol import SeparationInput, check_separation
from deployments.ingress.areas import area_jobs
from deployments.ingress.request_checks import JobInput, check_file_type, parse
from deployments.ingress.services import Services
from registry import ModelEntry


async def _separation(services: Services, entry: ModelEntry, data: dict[str, Any]) -> dict[str, Any]:
    params = parse(SeparationInput, data)
    upload = await services.upload(params.file_id)
    check_file_type(services, entry, upload)
    check_separation(entry, params, upload)
    return params.model_dump(exclude={"model_variant"})


JOBS: dict[str, JobInput] = {"source-separation": JobInput(_separation, (SeparationInput,)), **area_jobs()}
JOB_INPUTS = {task: job.build for task, job in JOBS.items()}
# Per task: the schemas its builder validates the input against, and a rule across fields it checks too.
TASK_INPUTS = {task: (job.schemas, job.rule) for task, job in JOBS.items()}
INPUT_SCHEMAS = tuple(dict.fromkeys(schema for schemas, _ in TASK_INPUTS.values() for schema in schemas))
# A job's `input`: a dict for the builders, stated in the spec as any task's input (the model decides which).
TaskInput = Annotated[dict[str, Any], BeforeValidator(lambda value: value,
                                                      json_schema_input_type=reduce(or_, INPUT_SCHEMAS))]


def run_by_task_or_model(schema: dict[str, Any]) -> None:
    """json_schema_extra of a run request (`model`, `task`, `input`: TaskInput), as submit_run checks it: a task
    named, and an input of that task's; or a model named (not empty), and an input of its task, which only
    the catalog knows. Branches, not if/then: schemathesis generates from those."""
    refs = dict(zip(INPUT_SCHEMAS, schema["properties"]["input"].pop("anyOf")))
    schema["properties"]["input"]["type"] = "object"
    schema["anyOf"] = [
        {"required": ["task"], "properties": {
            "task": {"const": task}, "input": {"allOf": [{"anyOf": [refs[s] for s in schemas]}, rule]}}}
        for task, (schemas, rule) in TASK_INPUTS.items()
    ] + [{"required": ["model"], "properties": {"model": {"type": "string", "minLength": 1}, "task": {"type": "null"},
                                                "input": {"anyOf": list(refs.values())}}}]


async def job_input(services: Services, entry: ModelEntry, data: dict[str, Any]) -> dict[str, Any]:
    task = services.catalog.task_of(entry)
    build = JOB_INPUTS.get(task)
    if build is None:
        raise InvalidRequest(
            f"Model '{entry.id}' ({task}) does not run as a job in this build; "
            f"jobs run for {', '.join(sorted(JOB_INPUTS))}"
        )
    return await build(services, entry, data)
