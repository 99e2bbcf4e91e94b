"""Helpers tests share, one home each: tests import them from here, never from another test
module (`tests/import_rules.py`, run by `make lint` and CI, fails on that).

`assessments` (the intake, samples, scored assessments), `pilots` (a pilot queued through the
API, waiting for one), `models` (registered models), `pages` (PDF text, charts, artifacts),
`cli` (the web side's command line), `engine` (the pilot engine's stand-in arms and data),
`bundles` (hand-off bundle inputs), `scaleout` (pilots on a fleet of real workers). Report
factories that build finished pilots through the services live in
`tests/app/reports/factory.py`.
"""
