#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const char *progname = "memray";

static void vwarn(const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: ", progname);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void warnmsg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwarn(fmt, ap);
	va_end(ap);
}

void die(int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwarn(fmt, ap);
	va_end(ap);
	exit(status);
}

void bad_option(int c, const char *arg)
{
	extern int optopt;
	char shortopt[3] = { '-', (char)optopt, 0 };
	int is_long = arg && arg[0] == '-' && arg[1] == '-';
	const char *name = is_long || !optopt ? arg : shortopt;
	if (c == ':')
		warnmsg("option '%s' needs an argument", name);
	else
		warnmsg("unknown option '%s'", name);
}

void usage_exit(const char *text, int status)
{
	if (status == EXIT_OK) {
		fputs(text, stdout);
		if (close_stdout() < 0) /* (a full disk, a closed stdout) */
			status = EXIT_USAGE;
	} else {
		fprintf(stderr, "%.*s", (int)(strstr(text, "\n\n") - text + 1), text);
	}
	exit(status);
}

void version_exit(void)
{
	printf("%s %s\n", progname, MEMRAY_VERSION);
	exit(close_stdout() < 0 ? EXIT_USAGE : EXIT_OK);
}

long pid_arg(const char *opt, const char *s)
{
	char *end;
	long pid = strtol(s, &end, 10);
	if (*end || end == s || pid < 0)
		die(EXIT_USAGE, "invalid %s '%s'", opt, s);
	return pid;
}

char *human_size(char *buf, uint64_t n)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	if (n < 1024) {
		snprintf(buf, 16, "%u B", (unsigned)n);
		return buf;
	}
	double v = (double)n;
	int u = 0;
	while (v >= 1024 && u < 6) {
		v /= 1024;
		u++;
	}
	snprintf(buf, 16, "%.1f %s", v, units[u]);
	return buf;
}

int parse_size(const char *s, uint64_t *out)
{
	static const struct { const char *unit; double mult; } units[] = {
		{ "", 1 }, { "B", 1 },
		{ "K", 1024.0 }, { "KiB", 1024.0 }, { "KB", 1e3 }, { "k", 1024.0 },
		{ "M", 1048576.0 }, { "MiB", 1048576.0 }, { "MB", 1e6 },
		{ "G", 1073741824.0 }, { "GiB", 1073741824.0 }, { "GB", 1e9 },
		{ "T", 1099511627776.0 }, { "TiB", 1099511627776.0 }, { "TB", 1e12 },
	};
	char *end;
	double v = strtod(s, &end);
	if (end == s || v < 0 || v != v)
		return -1;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(end, units[i].unit) == 0) {
			double b = v * units[i].mult;
			if (b >= 18446744073709551615.0)
				return -1;
			*out = (uint64_t)(b + 0.5);
			return 0;
		}
	return -1;
}

void put_quoted(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

int close_stdout(void)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		warnmsg("error writing to standard output: %s", strerror(errno ? errno : EIO));
		return -1;
	}
	return 0;
}

size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	if (s[0] < 0x80)
		return 1;
	else if ((s[0] & 0xe0) == 0xc0 && s[0] >= 0xc2)
		len = 2;
	else if ((s[0] & 0xf0) == 0xe0)
		len = 3;
	else if ((s[0] & 0xf8) == 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	/* no overlong forms, no surrogates, nothing above U+10FFFF */
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
		return 0;
	return len;
}

void json_string(FILE *f, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	putc('"', f);
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t k = utf8_len(s + i, n - i);
		if (c == '"' || c == '\\') {
			putc('\\', f);
			putc(c, f);
		} else if (c == '<' || c == '>' || c == '&' || c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
		} else if (k == 0) {
			fprintf(f, "\\\\x%02x", c);
		} else {
			fwrite(s + i, 1, k, f);
			i += k;
			continue;
		}
		i++;
	}
	putc('"', f);
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		die(EXIT_USAGE, "out of memory");
	return q;
}

char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xrealloc(NULL, n), s, n);
}

char *hex_string(char *out, const uint8_t *b, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = 0;
	return out;
}

const char *mr_signal_name(int sig)
{
	static char rt[16];
	const char *s = sigabbrev_np(sig);
	if (s)
		return s;
	if (sig >= SIGRTMIN && sig <= SIGRTMAX) {
		snprintf(rt, sizeof(rt), "RTMIN+%d", sig - SIGRTMIN);
		return rt;
	}
	return "?";
}
