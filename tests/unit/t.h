/*
 * t.h - the unit-test harness: one binary per module (tests/unit/test_X.c).
 *
 *   static void test_something(void) { T_EQ_INT(1 + 1, 2); T_EQ_STR(s, "x"); }
 *   int main(void) { T_RUN(test_something); return t_done(); }
 *
 * Each test function is one test; it fails if any check in it fails.  The
 * binary prints "ok NAME" / "FAIL NAME: file:line: what" and at the end the
 * line "N passed, N failed", and exits 1 if anything failed.
 */
#ifndef T_H_INCLUDED
#define T_H_INCLUDED

#include <stdio.h>
#include <string.h>
#include <stdlib.h>

static int t_passed, t_failed, t_cur_failed;

#define T_FAILF(...) do { \
	if (!t_cur_failed) printf("\n"); \
	printf("    %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); \
	t_cur_failed = 1; } while (0)

#define T_CHECK(c) do { if (!(c)) T_FAILF("check failed: %s", #c); } while (0)
#define T_EQ_INT(a, b) do { long long _a = (long long)(a), _b = (long long)(b); \
	if (_a != _b) T_FAILF("%s == %lld, expected %s == %lld", #a, _a, #b, _b); } while (0)
#define T_EQ_STR(a, b) do { const char *_a = (a), *_b = (b); \
	if (!_a || !_b || strcmp(_a, _b) != 0) \
	    T_FAILF("%s == \"%s\", expected \"%s\"", #a, _a ? _a : "(null)", _b ? _b : "(null)"); } while (0)

#define T_RUN(fn) do { t_cur_failed = 0; printf("%-50s", #fn); fflush(stdout); fn(); \
	if (t_cur_failed) { t_failed++; printf("FAIL %s\n", #fn); } else { t_passed++; printf("ok\n"); } \
	fflush(stdout); } while (0)

static inline int t_done(void)
{
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}

#endif
