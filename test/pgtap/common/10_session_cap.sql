-- Sessions per role are capped (issue 11, finding 2 as the review found it:
-- each session has a disk quota and a fuse2fs of its own, so without a cap a
-- role's disk and host processes were unbounded): with
-- cloudrun_sandbox.max_sessions_per_role two above what alice has, she makes
-- two more and the third is refused with 53400, whether made by
-- create_session, by exec or by submit to a new name; nothing of the refused
-- ones is left; bob is not affected; once she drops one she can make one.
-- Runs as: tap (sandbox_user only) as alice and bob.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(9);

SET ROLE alice;
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['sc1', 'sc2', 'sc3', 'sc4']) s;
SELECT count(*) + 2 AS cap FROM sandbox.sessions \gset
RESET ROLE;
SELECT is(test.set_setting('cloudrun_sandbox.max_sessions_per_role', :'cap'), :'cap',
		  'the cap is two sessions above what alice has');

SET ROLE alice;
SELECT lives_ok($$SELECT sandbox.create_session('sc1')$$, 'alice makes one more session');
SELECT lives_ok($$SELECT sandbox.exec('true', 'sc2')$$, 'and one more by exec');
SELECT throws_ok($$SELECT sandbox.create_session('sc3')$$, '53400', NULL,
				 'a third is refused with 53400');
SELECT throws_ok($$SELECT sandbox.exec('true', 'sc3')$$, '53400', NULL, 'also when exec would make it');
SELECT throws_ok($$SELECT sandbox.submit('true', 'sc3')$$, '53400', NULL, 'and when submit would');
SELECT is((SELECT count(*)::int FROM sandbox.sessions WHERE name = 'sc3'), 0, 'nothing of them is left');
RESET ROLE;

SET ROLE bob;
SELECT lives_ok($$SELECT sandbox.exec('true', 'sc3')$$, 'bob is not affected');
SELECT sandbox.drop_session('sc3');
RESET ROLE;

SET ROLE alice;
SELECT sandbox.drop_session('sc1');
SELECT lives_ok($$SELECT sandbox.create_session('sc4')$$, 'after a drop alice can make one again');
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['sc1', 'sc2', 'sc3', 'sc4']) s;
RESET ROLE;
SELECT test.set_setting('cloudrun_sandbox.max_sessions_per_role', NULL);
SELECT * FROM finish();
