"""The netdsl version, at the bottom of the import order so that any module may read it."""
__version__ = "0.1.0"
