-- cloudrun_sandbox 0.3.0 -> 0.4.0: bounded resources (issue 11): disk quota per
-- session, history bytes per role, limits in force.  Each block below belongs
-- to one change; keep them apart.
\echo Use "ALTER EXTENSION cloudrun_sandbox UPDATE TO '0.4.0'" to load this file. \quit
