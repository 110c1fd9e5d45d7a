"""Tracking: atomic file writes and the workspace ledger of runs.

Every file honed writes goes through ``honed.tracking.atomic`` so a crash never leaves half a file, and
every run is recorded in ``honed.tracking.ledger`` (one SQLite file per workspace, or the database that
``HONED_LEDGER`` names for a team, see ``honed.tracking.ledger_db``) only after its files are complete.
"""
