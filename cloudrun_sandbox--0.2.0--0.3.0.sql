-- cloudrun_sandbox 0.2.0 -> 0.3.0: the worker and both backends under faults
-- (issue 10).  Each block below belongs to one change; keep them apart.
\echo Use "ALTER EXTENSION cloudrun_sandbox UPDATE TO '0.3.0'" to load this file. \quit

-- (no statements yet: this release's SQL changes go in blocks here)
