"""Parts a user adds in one file each (registered on import), used by tests/test_registries.py."""
