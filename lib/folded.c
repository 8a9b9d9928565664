#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "folded.h"
#include "input.h"
#include "util.h"

/* A quoted metadata value in place, as put_quoted wrote it: from
 * "a \"b\"\n" to a "b" and a newline; up to the closing quote. */
static void unquote(char *v)
{
	char *w = v;
	for (char *r = v + 1; *r && *r != '"'; r++) {
		if (*r != '\\' || !r[1]) {
			*w++ = *r;
			continue;
		}
		r++;
		if (*r == 'n') {
			*w++ = '\n';
		} else if (*r == 't') {
			*w++ = '\t';
		} else if (*r == 'x' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
			char hex[3] = { r[1], r[2], 0 };
			*w++ = (char)strtol(hex, NULL, 16);
			r += 2;
		} else {
			*w++ = *r;
		}
	}
	*w = 0;
}

/* One line: 2 a stack, 1 malformed, 3 metadata, 0 blank or a comment. */
static int line(char *s, size_t n, const struct folded_sink *k)
{
	if (n && s[n - 1] == '\r')
		s[--n] = 0;
	if (n == 0)
		return 0;
	if (s[0] == '#') {
		if (n < 2 || s[1] != ' ')
			return 0;
		/* "# key=NUMBER", "# key="TEXT"" (C escapes), or as memray-c
		 * wrote before, "# key: value" */
		char *key = s + 2, *v = key + strcspn(key, "= ");
		if (*v == '=' && v > key) {
			*v++ = 0;
			if (*v == '"')
				unquote(v);
		} else if ((v = strstr(key, ": "))) {
			*v = 0;
			v += 2;
		} else {
			v = "";
		}
		if (k->meta)
			k->meta(k->ctx, key, v);
		return 3;
	}
	size_t end = n;
	while (end > 0 && s[end - 1] >= '0' && s[end - 1] <= '9')
		end--;
	if (end == n || end < 2 || s[end - 1] != ' ' || n - end > 19)
		return 1;
	uint64_t v = strtoull(s + end, NULL, 10);
	size_t flen = end - 1;
	while (flen > 0 && s[flen - 1] == ' ')
		flen--;
	if (k->stack2) {
		/* a second integer before the last: a differential line */
		size_t b = flen;
		while (b > 0 && s[b - 1] >= '0' && s[b - 1] <= '9')
			b--;
		if (b < flen && b >= 2 && s[b - 1] == ' ' && flen - b <= 19) {
			uint64_t before = strtoull(s + b, NULL, 10);
			size_t f2 = b - 1;
			while (f2 > 0 && s[f2 - 1] == ' ')
				f2--;
			if (f2 > 0) {
				k->stack2(k->ctx, s, f2, before, v);
				return 2;
			}
		}
	}
	if (k->stack)
		k->stack(k->ctx, s, flen, v);
	return 2;
}

long folded_read(struct mr_input *in, const struct folded_sink *sink, long *lines)
{
	long good = 0;
	char *buf = NULL;
	size_t cap = 0, len = 0;
	long bad = 0;
	for (;;) {
		if (cap - len < 65536) {
			cap = cap ? cap * 2 : 1 << 17;
			char *b = realloc(buf, cap);
			if (!b) {
				free(buf);
				return -1;
			}
			buf = b;
		}
		ssize_t k = mr_input_read(in, buf + len, cap - len - 1);
		if (k < 0) {
			free(buf);
			return -1;
		}
		size_t start = 0, end = len + (size_t)k;
		for (size_t i = len; i < end; i++)
			if (buf[i] == '\n') {
				buf[i] = 0;
				int t = line(buf + start, i - start, sink);
				bad += t == 1, good += t >= 2;
				start = i + 1;
			}
		memmove(buf, buf + start, end - start);
		len = end - start;
		if (k == 0) {
			if (len) {
				buf[len] = 0;
				int t = line(buf, len, sink);
				bad += t == 1, good += t >= 2;
			}
			break;
		}
	}
	free(buf);
	if (lines)
		*lines = good;
	return bad;
}

int folded_read_input(struct mr_input *in, const struct folded_sink *sink)
{
	long good = 0, bad = folded_read(in, sink, &good);
	int status = EXIT_OK;
	if (bad < 0) {
		warnmsg("%s: %s", mr_input_name(in), mr_input_error(in));
		status = EXIT_USAGE;
	} else if (good == 0) {
		/* not collapsed stacks at all (a script, a log, nothing): refused */
		if (bad)
			warnmsg("%s: not collapsed stacks nor a memray stream (%ld line%s, none of "
				"the form 'frame;frame;... VALUE')", mr_input_name(in), bad,
				bad == 1 ? "" : "s");
		else
			warnmsg("%s: empty: no collapsed stacks nor a memray stream in it",
				mr_input_name(in));
		status = EXIT_REFUSED;
	} else if (bad > 0) {
		warnmsg("%s: %ld malformed lines skipped", mr_input_name(in), bad);
	}
	mr_input_close(in);
	return status;
}
