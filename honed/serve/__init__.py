"""``honed serve``: a bundle behind HTTP, with dynamic batching, limits and Prometheus metrics.

``create_app(load_served("bundle/"), ServeSettings(max_batch=32))`` gives the FastAPI app; ``honed serve``
runs it under uvicorn. See docs/serving.md.
"""

from honed.serve.app import app_from_bundle, create_app
from honed.serve.limits import ServeSettings
from honed.serve.model import ServedModel, load_served

__all__ = ["ServeSettings", "ServedModel", "app_from_bundle", "create_app", "load_served"]
