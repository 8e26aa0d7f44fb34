/*
 * stream_notices.c
 *		A libpq client for test/stream_notices.sh: runs one query and prints,
 *		for every NOTICE it receives, the seconds since the query was sent and
 *		the notice's message, then the same for the query's result ("RESULT
 *		<t> <first column>"), so that the script can check the notices of
 *		sandbox.exec(..., stream => true) arrive spread over time, before the
 *		result.  Usage: stream_notices CONNINFO QUERY
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

static struct timespec t0;

/* since returns the seconds since the query was sent. */
static double
since(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9;
}

/* on_notice prints one notice with its arrival time (one line; newlines escaped). */
static void
on_notice(void *arg, const PGresult *res)
{
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	(void) arg;
	printf("NOTICE %.3f ", since());
	for (const char *p = msg ? msg : ""; *p; p++)
		putchar(*p == '\n' ? ' ' : *p);
	putchar('\n');
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	PGresult   *res;
	int			rc = 0;

	if (argc != 3)
	{
		fprintf(stderr, "usage: %s CONNINFO QUERY\n", argv[0]);
		return 2;
	}
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "cannot connect: %s", PQerrorMessage(conn));
		return 1;
	}
	PQsetNoticeReceiver(conn, on_notice, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!PQsendQuery(conn, argv[2]))
	{
		fprintf(stderr, "cannot send the query: %s", PQerrorMessage(conn));
		return 1;
	}
	while ((res = PQgetResult(conn)) != NULL)
	{
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
		{
			const char *v = PQntuples(res) > 0 && PQnfields(res) > 0 ? PQgetvalue(res, 0, 0) : "";

			printf("RESULT %.3f ", since());
			for (const char *p = v; *p; p++)
				putchar(*p == '\n' ? '|' : *p);
			putchar('\n');
		}
		else if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			printf("ERROR %.3f %s %s", since(), PQresultErrorField(res, PG_DIAG_SQLSTATE),
				   PQresultErrorMessage(res));
			rc = 1;
		}
		PQclear(res);
	}
	PQfinish(conn);
	return rc;
}
