"""Shared fixtures live in tests/support/ as plugins, one module per outside peer."""

pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.fake_live",
    "tests.support.browser",
    "tests.support.moto_s3",
    "tests.support.nginx",
]
