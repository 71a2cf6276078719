"""The HTTP API (`workbench serve-api`): the analysis API over HTTP, with keys and metrics.

`workbench.api.app.create_app` builds the FastAPI application; the routes are in
`routes`, their bodies in `schemas`. Importing this package imports nothing of
FastAPI: the `api` extra is needed only to serve.
"""
