"""The prediction API as a package, one concept per module.

contract    request/response models, the example patient, MAX_BATCH (pydantic only, no FastAPI)
settings    the one validated Settings object (pydantic-settings, the 12-factor variables)
state       model loading, the fast path's parity check, readiness
inference   validated patients -> predictions, traced, counted and logged
middleware  the JSON 413 body limit, and request bodies parsed by pydantic directly
errors      exception handlers: every error in one JSON shape, never a traceback
routes      the APIRouter, the plain Starlette hot paths and the OpenAPI document
app         create_app: wires the above (lifespan, middleware, routers, tracing)

Nothing is imported here, so `heart.serving.contract` stays importable without FastAPI.
"""
