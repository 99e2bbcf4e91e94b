"""Production hand-off: a finished pilot's chosen path as a runnable bundle (docs/pilots.md)."""
