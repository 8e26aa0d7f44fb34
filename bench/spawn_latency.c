/*
 * spawn_latency.c
 *		Runs a program N times (posix_spawn, wait) and prints the median
 *		round trip in milliseconds: the baseline of bench/exec_latency.
 *
 *		usage: spawn_latency N program [args...]
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static int
cmp(const void *a, const void *b)
{
	double		x = *(const double *) a, y = *(const double *) b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	int			n = argc > 2 ? atoi(argv[1]) : 0;
	double	   *ms;

	if (n <= 0)
	{
		fprintf(stderr, "usage: %s N program [args...]\n", argv[0]);
		return 2;
	}
	ms = calloc(n, sizeof(double));
	for (int i = 0; i < n; i++)
	{
		struct timespec t0, t1;
		pid_t		pid;
		int			status;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (posix_spawn(&pid, argv[2], NULL, NULL, argv + 2, environ) != 0 ||
			waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		{
			fprintf(stderr, "run %d of %s failed\n", i, argv[2]);
			return 1;
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ms[i] = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	}
	qsort(ms, n, sizeof(double), cmp);
	printf("%.3f\n", ms[n / 2]);
	return 0;
}
