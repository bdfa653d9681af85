"""Deployment targets: the compiled plan written out for other toolchains (`--emit c`)."""
