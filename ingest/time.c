/*
 * ISO-8601 timestamps and generated messageIds. Segment's events carry
 * their times as ISO-8601 strings; Weft keeps them as Unix microseconds.
 */
#include "ingest/ingest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "lib/err.h"
#include "lib/log.h"

static int digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

static bool leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
	static const int d[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	return m == 2 && leap(y) ? 29 : d[m - 1];
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int y, int m, int d)
{
	int64_t days = 0;

	/* Shift the year to start in March so the leap day comes last. */
	if (m <= 2) {
		y -= 1;
		m += 12;
	}
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m - 3) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	days = era * 146097 + doe - 719468;
	return days;
}

int ingest_parse_time(const char *s, int64_t *unix_us)
{
	const char *p = s;
	int y, mo, d, h = 0, mi = 0, sec = 0;
	int64_t frac_us = 0, offset_s = 0;

	if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) ||
	    *p++ != '-' || digits(&p, 2, &d))
		return WEFT_EINVAL;
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
		return WEFT_EINVAL;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
			return WEFT_EINVAL;
		if (*p == ':') {
			p++;
			if (digits(&p, 2, &sec))
				return WEFT_EINVAL;
			if (*p == '.' || *p == ',') {
				int64_t scale = 100000;

				p++;
				if (*p < '0' || *p > '9')
					return WEFT_EINVAL;
				for (; *p >= '0' && *p <= '9'; p++) {
					frac_us += (*p - '0') * scale;
					scale /= 10;
				}
			}
		}
		if (h > 23 || mi > 59 || sec > 60)
			return WEFT_EINVAL;
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int sign = *p++ == '-' ? -1 : 1, oh, om = 0;

			if (digits(&p, 2, &oh))
				return WEFT_EINVAL;
			/* +HH, +HHMM or +HH:MM */
			if (*p == ':')
				p++;
			if ((*p || p[-1] == ':') && digits(&p, 2, &om))
				return WEFT_EINVAL;
			if (oh > 23 || om > 59)
				return WEFT_EINVAL;
			offset_s = sign * (oh * 3600 + om * 60);
		}
		/* No zone: Segment's libraries always send one; read it as UTC. */
	}
	if (*p)
		return WEFT_EINVAL;
	int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 +
		       sec - offset_s;

	*unix_us = secs * 1000000 + frac_us;
	return 0;
}

void ingest_format_time(int64_t unix_us, char *out, size_t len)
{
	int64_t secs = unix_us / 1000000, us = unix_us % 1000000;
	struct tm tm;
	time_t t;

	if (us < 0) {
		us += 1000000;
		secs -= 1;
	}
	t = (time_t)secs;
	gmtime_r(&t, &tm);
	snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (int)(us / 1000));
}

void ingest_uuid4(char *out)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];
	size_t got = 0;

	while (got < sizeof(b)) {
		ssize_t n = getrandom(b + got, sizeof(b) - got, 0);

		if (n > 0)
			got += (size_t)n;
		else if (errno != EINTR && errno != EAGAIN) {
			log_error("getrandom_failed", "errno=%d", errno);
			abort();
		}
	}
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);	/* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);	/* RFC 4122 variant */
	for (int i = 0, o = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 15];
	}
	out[36] = '\0';
}
