"""The admin API's routes, one module per resource, each an ``APIRouter``
that :func:`admin_api.app.create_admin_app` includes."""
