/*
 * tap.h
 *		A few macros that print TAP ("ok N - name" / "not ok N - name") for the
 *		C unit tests, with the failing values on a diagnostic line.
 */
#ifndef SB_TAP_H
#define SB_TAP_H

#include <stdio.h>
#include <string.h>

static int	tap_n = 0;
static int	tap_failed = 0;

#define ok(cond, ...) \
	do { \
		int tap_ok_ = (cond); \
		printf("%sok %d - ", tap_ok_ ? "" : "not ", ++tap_n); \
		printf(__VA_ARGS__); \
		printf("\n"); \
		if (!tap_ok_) { tap_failed++; printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); } \
	} while (0)

#define is_str(got, want, ...) \
	do { \
		const char *tap_g_ = (got), *tap_w_ = (want); \
		int tap_c_ = tap_g_ && tap_w_ && strcmp(tap_g_, tap_w_) == 0; \
		ok(tap_c_, __VA_ARGS__); \
		if (!tap_c_) printf("#   got: '%s'\n#   expected: '%s'\n", tap_g_ ? tap_g_ : "(null)", tap_w_ ? tap_w_ : "(null)"); \
	} while (0)

#define is_int(got, want, ...) \
	do { \
		long long tap_g_ = (got), tap_w_ = (want); \
		ok(tap_g_ == tap_w_, __VA_ARGS__); \
		if (tap_g_ != tap_w_) printf("#   got: %lld\n#   expected: %lld\n", tap_g_, tap_w_); \
	} while (0)

#define tap_done() (printf("1..%d\n", tap_n), tap_failed ? 1 : 0)

#endif
