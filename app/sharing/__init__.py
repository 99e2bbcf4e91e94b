"""Read-only share links for one assessment's report."""
