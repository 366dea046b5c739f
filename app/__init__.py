"""The mlepi dashboard (Panel): a param view-model and views over mlepi_core's engine.

The dashboard itself is built in its own issue; until then `scripts/start.sh` runs
`mlepi demo`.
"""
