"""The REST API at /api/v1/: one NinjaAPI, each domain adds its router."""

from ninja import NinjaAPI

api = NinjaAPI(title="Siyu API", version="1", urls_namespace="api")
