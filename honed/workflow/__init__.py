"""The whole practice in one call: ``honed.workflow(data, budget="20m")`` (``honed.workflow.api``), or
``run_workflow(WorkflowSpec(...))``; see ``honed workflow --help``."""

import sys
import types

from honed.workflow import api
from honed.workflow.api import WorkflowFit, workflow_spec
from honed.workflow.budget import Budget, parse_duration
from honed.workflow.context import WorkflowSpec
from honed.workflow.run import WorkflowResult, resume_workflow, run_workflow

__all__ = ["Budget", "WorkflowFit", "WorkflowResult", "WorkflowSpec", "parse_duration", "resume_workflow",
           "run_workflow", "workflow_spec"]


class _CallablePackage(types.ModuleType):
    """``honed.workflow`` is this package, and ``honed.workflow(data, ...)`` runs a workflow: a package cannot
    be called, and a function of that name in ``honed/__init__.py`` would be replaced by the package as soon
    as it is imported. Setting a module's class is Python's documented way to give a module behaviour
    (https://docs.python.org/3/reference/datamodel.html#customizing-module-attribute-access)."""

    def __call__(self, data, **options) -> WorkflowFit:
        """Run ``honed workflow`` on ``data``; the arguments of ``honed.workflow.api.workflow``."""
        return api.workflow(data, **options)


sys.modules[__name__].__class__ = _CallablePackage
