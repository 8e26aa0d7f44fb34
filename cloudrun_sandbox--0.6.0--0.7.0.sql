-- cloudrun_sandbox 0.6.0 -> 0.7.0: live output and retries (issue 14, parts 3
-- to 5).  The interface (exec's stream, submit's retries, retry_delay and
-- retry_on) came in 0.6.0; these blocks give it its behaviour.  Each block
-- belongs to one change; keep them apart.
\echo Use "ALTER EXTENSION cloudrun_sandbox UPDATE TO '0.7.0'" to load this file. \quit

-- [stream] Live output (issue 14, parts 3 and 4).
-- (end of [stream])


-- [retry] Retries of queued commands (issue 14, part 5).
-- (end of [retry])
