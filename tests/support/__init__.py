"""Helpers the tests share: importable as ``support.<module>`` (pytest puts tests/ on the path)."""
