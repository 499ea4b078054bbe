"""Plain, slow reference implementations that the tests cross-check the fast code against."""
