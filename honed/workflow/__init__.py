"""The whole practice in one call: ``run_workflow(WorkflowSpec(...))``; see ``honed workflow --help``."""

from honed.workflow.budget import Budget, parse_duration
from honed.workflow.context import WorkflowSpec
from honed.workflow.run import WorkflowResult, resume_workflow, run_workflow

__all__ = ["Budget", "WorkflowResult", "WorkflowSpec", "parse_duration", "resume_workflow", "run_workflow"]
