"""Root conftest: puts tests/ on sys.path so every package's tests share tests/shared_helpers.py."""
