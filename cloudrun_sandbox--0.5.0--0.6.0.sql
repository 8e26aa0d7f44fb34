-- cloudrun_sandbox 0.5.0 -> 0.6.0: stdin, per-call cwd, live output and
-- retries (issue 14).  Each block below belongs to one change; keep them apart.
\echo Use "ALTER EXTENSION cloudrun_sandbox UPDATE TO '0.6.0'" to load this file. \quit
