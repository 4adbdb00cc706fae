from tests.gateway.conftest import make_gateway, mock  # noqa: F401  (fixtures)
